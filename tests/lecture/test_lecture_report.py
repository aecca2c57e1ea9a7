"""The lecture's page and command: the claims run once, timed once, shown as rounded tables;
the example configs shipped as package data."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from trainlab import pages
from trainlab.lecture.claims import EXPERIMENTS, ClaimResult, register
from trainlab.lecture.report import numbers_html, run_lecture, write_lecture_report

ROOT = Path(__file__).resolve().parents[2]
#: Two fast claims for the command's tests.
FAST = ("C12", "C14")


def test_every_shipped_config_equals_its_example_byte_for_byte():
    configs = [c for c in (resources.files("trainlab.lecture") / "configs").iterdir()]
    assert [c.name for c in configs if c.name.endswith(".yaml")] == ["mnist1d_mlp.yaml"]
    for config in configs:
        assert config.read_bytes() == (ROOT / "examples" / config.name).read_bytes(), (
            f"src/trainlab/lecture/configs/{config.name} differs from examples/{config.name}: "
            "copy the example over it"
        )


def test_numbers_show_rounded_to_four_significant_digits():
    html = numbers_html({"lr": 0.017782794100389228, "steps": 366, "held": True})
    assert "0.01778" in html and "366" in html and "yes" in html
    assert "0.0177827941" not in html


def test_records_with_the_same_fields_share_one_table_with_a_header_row():
    html = numbers_html(
        {
            "sgd": {"final_x": 1.130901122629987, "basin": "local"},
            "momentum": {"final_x": -1.300839565941577, "basin": "global"},
        }
    )
    assert html.count("<table>") == 1
    assert "<th>final x</th>" in html and "<th>basin</th>" in html
    assert re.search(r"<td[^>]*>sgd</td><td>1\.131</td><td>local</td>", html)
    assert re.search(r"<td[^>]*>momentum</td><td>-1\.301</td><td>global</td>", html)


def test_nested_records_become_columns_and_lists_of_runs_become_rows():
    html = numbers_html(
        {
            "quadratic": {
                "sgd": {"tol=0.001": {"steps": 174, "best_lr": 0.0177827941}},
                "adam": {"tol=0.001": {"steps": 35, "best_lr": 1.77827941}},
            },
            "runs": {"no dropout": [{"seed": 0, "gap": 0.3812345}, {"seed": 1, "gap": 0.4}]},
            "train_loss": [2.3025851, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.654321],
        }
    )
    assert "<th>tol=0.001 steps</th><th>tol=0.001 best lr</th>" in html
    assert "<td>174</td><td>0.01778</td>" in html
    assert html.count("no dropout") == 2 and "0.3812" in html
    assert "2.303 → 0.6543 (8 values)" in html


@pytest.fixture
def fake_claim():
    """A registered claim whose experiment reports its own (wrong) time."""

    def experiment(out_dir: Path, quick: bool) -> ClaimResult:
        return ClaimResult("C99", "A test claim", "held", "It held.", {"x": 1 / 3}, [], 1234.0)

    register("C99")(experiment)
    yield "C99"
    del EXPERIMENTS["C99"]


def test_run_lecture_measures_each_claims_time_itself(fake_claim, tmp_path):
    (result,) = run_lecture(tmp_path, only=[fake_claim], echo=lambda s: None)
    assert 0 <= result.seconds < 60


def test_the_page_is_the_shared_skeleton_and_the_json_keeps_full_precision(fake_claim, tmp_path):
    results = run_lecture(tmp_path, only=[fake_claim], echo=lambda s: None)
    path = write_lecture_report(results, tmp_path)
    html = path.read_text(encoding="utf-8")
    assert html == pages.page("The lecture's claims, measured", _body(html))
    assert "0.3333" in html and "0.33333" not in html
    (saved,) = json.loads((tmp_path / "lecture.json").read_text(encoding="utf-8"))
    assert saved["numbers"]["x"] == 1 / 3


def _body(html: str) -> str:
    """What :func:`pages.page` wrapped: between the title heading and ``</body>``."""
    start = html.index("</h1>\n") + len("</h1>\n")
    return html[start : html.rindex("</body>")]


@pytest.mark.parametrize(
    "argv",
    [
        ["--only", ",".join(FAST)],
        ["--only", FAST[0], "--only", FAST[1]],
        ["--only", *FAST],
        [FAST[1].lower(), FAST[0]],
    ],
    ids=["comma", "repeated", "space", "arguments"],
)
def test_the_lecture_command_takes_claims_in_every_spelling(run_cli, tmp_path, argv):
    code, out, err = run_cli("lecture", "--quick", "--out", str(tmp_path), *argv)
    assert code == 0, err
    ran = [line.split()[0] for line in out.splitlines() if line.startswith("C")]
    assert ran == list(FAST)
    assert (tmp_path / "lecture.html").is_file()


def test_an_unknown_claim_is_a_one_line_error_naming_it(run_cli, tmp_path):
    code, _, err = run_cli("lecture", "--only", "C3,C42", "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "C42" in err
