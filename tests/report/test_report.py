"""`write_report`: one self-contained HTML page per run, study or comparison."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from PIL import Image

from trainlab.report import write_report
from trainlab.run import fit

from tables import write_table_csv

_IMG_SRC = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"")
_PNG_URI = "data:image/png;base64,"


def _quiet():
    return dict(quiet=True, echo=lambda _: None)


def _config(tmp_path, name="tiny", extra="", epochs=3):
    csv_path = tmp_path / "table.csv"
    if not csv_path.exists():
        write_table_csv(tmp_path, n=120)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""name: {name}
seed: 0
data: {{dataset: {csv_path}, preprocess: [standardize], split: {{val: 0.2, test: 0.2}}}}
model: {{kind: mlp, hidden: [8]}}
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 16}}
{extra}"""
    )
    return path


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run-a"
    fit(_config(tmp_path, "tiny-a"), out=out, **_quiet())
    return out


def _images(page: str) -> list[Image.Image]:
    """Every <img> of the page, decoded; each must be an embedded PNG."""
    images = []
    for src in _IMG_SRC.findall(page):
        assert src.startswith(_PNG_URI), src[:60]
        data = base64.b64decode(src[len(_PNG_URI) :], validate=True)
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG"
        assert image.width > 0 and image.height > 0
        images.append(image)
    return images


def _assert_self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page
    assert not re.search(r"<link\b", page)


def test_a_run_report_is_one_self_contained_page_with_results_curves_diagnosis_and_config(
    run_dir,
):
    out = write_report(run_dir)
    assert out == run_dir / "report.html" and out.is_file()
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "tiny-a" in page
    assert "<pre>" in page and "batch_size: 16" in page  # the resolved config
    assert len(_images(page)) >= 2  # loss and accuracy curves
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["diagnosis"]
    for finding in summary["diagnosis"]:
        assert _escaped(finding["advice"]) in page
        assert f'class="finding {finding["severity"]}"' in page
    assert f"{summary['test']['accuracy']:.4g}" in page


def test_a_run_page_shows_results_first_and_the_config_last_collapsed(run_dir):
    page = write_report(run_dir).read_text(encoding="utf-8")
    results = page.index("<h3>Results</h3>")
    table = page.index("<table>", results)
    assert ">test</td>" in page[table : page.index("</table>", table)]
    assert "best epoch <b>" in page[results:]
    order = [results, page.index("<h3>Curves</h3>"), page.index("<h3>Diagnosis</h3>")]
    config = page.index("batch_size: 16")
    assert order == sorted(order) and order[-1] < config
    details = page.rindex("<details>", 0, config)
    assert page[details:config].startswith("<details><summary>config.yaml</summary>")
    assert "</details>" in page[config:]
    assert page.count("<details>") == 1


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_a_run_killed_before_its_summary_still_gets_its_curves(run_dir, tmp_path):
    (run_dir / "summary.json").unlink()
    page = write_report(run_dir, out=tmp_path / "partial.html").read_text(encoding="utf-8")
    assert "no summary.json" in page
    assert "best epoch so far (from metrics.jsonl)" in page
    assert len(_images(page)) >= 2
    assert "computed here from metrics.jsonl" in page  # the diagnosis still shows


def test_nan_in_metrics_and_a_half_written_line_are_reported_not_fatal(run_dir, tmp_path):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    entry = json.loads(lines[-1])
    entry["epoch"] += 1
    entry["train_loss"] = float("nan")
    entry["val_loss"] = float("inf")
    lines += [json.dumps(entry), '{"epoch": 99, "train_lo']  # json writes NaN and Infinity
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    page = write_report(run_dir, out=tmp_path / "nan.html").read_text(encoding="utf-8")
    assert "non-finite values" in page
    assert "could not be read" in page
    assert len(_images(page)) >= 2


def test_text_from_the_files_is_html_escaped(run_dir, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["diagnosis"] = [
        {
            "kind": "healthy",
            "severity": "info",
            "evidence": {"note": "<b>x</b>"},
            "advice": "<script>alert(1)</script>",
            "message": "a & b",
        }
    ]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = write_report(run_dir, out=tmp_path / "esc.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_the_lr_finder_curve_is_shown_when_the_run_used_one(tmp_path):
    out = tmp_path / "auto"
    config = _config(tmp_path, "tiny-auto")
    fit(config, overrides=["optimizer.lr=auto"], out=out, **_quiet())
    assert (out / "lr_find.json").is_file()
    (out / "lr_find.png").unlink()  # drawn from lr_find.json instead
    page = write_report(out).read_text(encoding="utf-8")
    assert "Learning-rate finder" in page
    assert 'alt="learning-rate finder"' in page
    _images(page)


def test_a_directory_that_is_neither_a_run_nor_a_study_is_a_value_error(tmp_path):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    with pytest.raises(ValueError, match="not-a-run"):
        write_report(empty)
    with pytest.raises(ValueError, match="missing-dir"):
        write_report(tmp_path / "missing-dir")
    with pytest.raises(ValueError):
        write_report([])


def test_two_runs_get_a_comparison_table_and_overlaid_curves(run_dir, tmp_path):
    other = tmp_path / "run-b"
    fit(_config(tmp_path, "tiny-b", epochs=2), out=other, **_quiet())
    out = write_report([run_dir, other], out=tmp_path / "compare.html")
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    comparison = page.split("<h2>Comparison</h2>", 1)[1].split("</table>", 1)[0]
    assert "run-a" in comparison and "run-b" in comparison
    assert "tiny-a" in comparison and "tiny-b" in comparison
    assert 'alt="val_loss"' in page
    assert len(_images(page)) >= 6  # 2 overlays, then each run's own curves
    # the default place for several runs: their common parent
    assert write_report([run_dir, other]) == tmp_path / "report.html"


def test_runs_that_share_a_name_are_labelled_by_their_path_below_the_common_folder(
    run_dir, tmp_path
):
    import shutil

    runs = [tmp_path / "sweep" / v / "seed0" for v in ("optimizer.lr=0.1", "optimizer.lr=1")]
    for run in runs:
        shutil.copytree(run_dir, run)
    page = write_report(runs).read_text(encoding="utf-8")
    comparison = page.split("<h2>Comparison</h2>", 1)[1].split("</table>", 1)[0]
    assert '<td class="text">optimizer.lr=0.1/seed0</td>' in comparison
    assert '<td class="text">optimizer.lr=1/seed0</td>' in comparison
    assert str(tmp_path) not in comparison


def _fake_study(tmp_path, run_dir):
    """A study directory as `trainlab tune` leaves it, with run_dir as its final run."""
    study = tmp_path / "study"
    study.mkdir()
    run_dir.rename(study / "final")
    rows = [
        ["number", "state", "value", "default", "model.dropout", "optimizer.lr", "seconds"],
        [0, "COMPLETE", 0.70, True, 0.0, 0.001, 1.0],
        [1, "COMPLETE", 0.80, False, 0.2, 0.01, 1.1],
        [2, "PRUNED", 0.40, False, 0.5, 0.09, 0.3],
        [3, "FAIL", "", False, 0.1, 0.3, ""],
        [4, "COMPLETE", 0.75, False, 0.3, 0.005, 1.2],
    ]
    with open(study / "trials.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    summary = {
        "run_dir": str(study),
        "study": "tiny-study",
        "metric": "val_accuracy",
        "direction": "maximize",
        "best_params": {"optimizer.lr": 0.01, "model.dropout": 0.2},
        "best_value": 0.8,
        "best_trial": 1,
        "default_value": 0.7,
        "trials": {"complete": 3, "pruned": 1, "failed": 1, "running": 0},
        "importances": {"optimizer.lr": 0.8125, "model.dropout": 0.1875},
        "final": "train",
        "test": {"loss": 0.5, "accuracy": 0.7777},
        "final_run": str(study / "final"),
    }
    (study / "summary.json").write_text(json.dumps(summary))
    return study


def test_a_study_report_shows_importances_trials_and_its_final_run(run_dir, tmp_path):
    study = _fake_study(tmp_path, run_dir)
    page = write_report(study).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "tiny-study" in page
    assert 'alt="parameter importances"' in page and 'alt="trial values"' in page
    trials = page.split("<h3>All trials</h3>", 1)[1].split("</table>", 1)[0]
    assert "PRUNED" in trials and "FAIL" in trials and "optimizer.lr" in trials
    assert trials.count("<tr") == 6  # header and 5 trials
    assert '<tr class="best"><td class="text">1</td>' in trials
    assert "0.7777" in page and "0.8" in page and "0.7" in page
    final = page.split("<h3>Final run</h3>", 1)[1]
    assert "tiny-a" in final and 'alt="loss curves"' in final
    # results first; the final run's config last in its section, collapsed
    assert page.index("<h3>Result</h3>") < page.index("<h3>Final run</h3>")
    config = final.index("batch_size: 16")
    assert final.rindex("<details><summary>config.yaml</summary>", 0, config) > final.index(
        "<h4>Diagnosis</h4>"
    )
    assert len(_images(page)) >= 4


def test_a_study_without_its_final_run_says_so(run_dir, tmp_path):
    study = _fake_study(tmp_path, run_dir)
    (study / "final" / "metrics.jsonl").unlink()
    page = write_report(study).read_text(encoding="utf-8")
    assert "no final run" in page
