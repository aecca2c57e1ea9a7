"""The HTML reports in a real browser: headless Chromium renders them without a console
error, every figure decodes, and a screenshot of the page is taken.

The browser comes from ``TRAINLAB_TEST_CHROMIUM`` (the Makefile's ``test`` target sets it
from ``scripts/chromium.sh``, which installs Debian's ``chromium`` when it is missing);
without it these tests skip. Playwright drives that system browser: its own browser
download (``playwright install``) is neither needed nor used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainlab.report import write_report
from trainlab.run import fit

from tables import write_table_config, write_table_csv

#: As the machine notes have it: no GPU, no sandbox (root), and no background connections
#: (this machine's closed network refuses them, many at a time). Playwright adds a fresh,
#: empty --user-data-dir of its own to every launch.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000  # launching, loading and each browser call; a local file needs far less

# Every <img>: whether it finished loading and the size it decoded to (0 x 0: broken).
_IMAGES_JS = """() => Array.from(document.images).map((img, i) => ({
    index: i,
    alt: img.alt,
    src: img.currentSrc.slice(0, 40),
    complete: img.complete,
    width: img.naturalWidth,
    height: img.naturalHeight,
}))"""


def _chromium() -> str:
    """The browser to test with; skips, saying why, when there is none."""
    path = os.environ.get("TRAINLAB_TEST_CHROMIUM")
    if not path:
        pytest.skip(
            "TRAINLAB_TEST_CHROMIUM is not set: the Makefile's test target sets it from "
            "scripts/chromium.sh (`TRAINLAB_TEST_CHROMIUM=$(bash scripts/chromium.sh)`)"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"TRAINLAB_TEST_CHROMIUM={path!r} is not an executable file")
    return path


def _check_page(path: Path, screenshot: Path | None = None, min_images: int = 1) -> Path:
    """Open the HTML file ``path`` in headless Chromium and check that it renders cleanly.

    Fails when the page logs a console error or throws, when a request fails (a report
    is self-contained: it makes none but its own file), when it shows fewer than
    ``min_images`` images, or when an ``<img>`` did not load or decoded to 0 x 0. Takes a
    full-page screenshot to ``screenshot`` (default: ``path`` with a ``.png`` suffix) and
    returns that file. Skips when there is no browser (see :func:`_chromium`)."""
    executable = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` package is not installed (dev extra)"
    )
    path = Path(path).resolve()
    screenshot = Path(screenshot) if screenshot is not None else path.with_suffix(".png")
    problems: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error"
                    else None
                ),
            )
            page.on("pageerror", lambda err: problems.append(f"uncaught exception: {err}"))
            page.on(
                "requestfailed",
                lambda req: problems.append(f"request failed: {req.url[:80]} ({req.failure})"),
            )
            page.goto(path.as_uri(), wait_until="load", timeout=TIMEOUT_MS)
            # Decoding may trail the load event: wait for every image, broken ones included.
            page.wait_for_function(
                "() => Array.from(document.images).every(img => img.complete)",
                timeout=TIMEOUT_MS,
            )
            images = page.evaluate(_IMAGES_JS)
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=True, timeout=TIMEOUT_MS)
        finally:
            browser.close()

    assert not problems, f"{path.name} in Chromium:\n" + "\n".join(problems)
    assert title, f"{path.name} has no <title>"
    assert len(images) >= min_images, f"{path.name}: {len(images)} <img>, {min_images}+ wanted"
    broken = [img for img in images if not (img["width"] > 0 and img["height"] > 0)]
    assert not broken, f"{path.name}: images that did not load or decode: {broken}"
    assert screenshot.is_file() and screenshot.stat().st_size > 0, "no screenshot written"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    return screenshot


def test_fit_report_renders_in_chromium(tmp_path):
    _chromium()  # skip before training when there is no browser
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    summary = fit(
        config,
        ["train.epochs=3"],
        out=tmp_path / "run",
        quiet=True,
        echo=lambda _: None,
    )
    report = write_report(summary["run_dir"])  # the CLI renders it after `fit` returns
    assert report.is_file()

    shot = _check_page(report, tmp_path / "fit-report.png", min_images=2)  # loss, accuracy
    assert shot.stat().st_size > 1000


def test_lecture_report_renders_in_chromium(tmp_path):
    """The real lecture page, from real (quick) experiments of both kinds of claim."""
    _chromium()
    from trainlab.lecture.report import run_lecture, write_lecture_report

    results = run_lecture(
        tmp_path, quick=True, only=["C1", "C5", "C7", "C12", "C14"], echo=lambda _: None
    )
    html = write_lecture_report(results, tmp_path)
    assert {r.verdict for r in results} <= {"held", "did not hold", "inconclusive"}
    _check_page(Path(html), tmp_path / "lecture.png", min_images=len(results))
