"""`trainlab sweep`, and the batched engine inside `trainlab compare` and `tune --batch`.

The runs of a sweep are the runs `trainlab fit` makes of the same configs; compare's
results do not depend on whether it trains batched; a batched study tells Optuna what the
one-at-a-time objective would.
"""

from __future__ import annotations

import csv
import json
import math

import optuna
import pytest

from trainlab.compare import compare
from trainlab.tune import TuneError, tune
from trainlab.tune.workers import objective_for
from trainlab.variants import VaryError, parse_vary

from tables import write_table_config, write_table_csv


@pytest.fixture
def config(tmp_path):
    """The table config: MLP with dropout 0.2, Adam, a cosine schedule, 4 epochs."""
    return write_table_config(tmp_path, write_table_csv(tmp_path))


# --------------------------------------------------------------------------- --vary


def test_vary_reads_log_and_linear_spaces_lists_and_comma_values():
    got = parse_vary(
        [
            "optimizer.lr=logspace(1e-4,1e-1,4)",
            "optimizer.momentum=linspace(0, 0.9, 4)",
            "model.dropout=[0,0.3]",
            "optimizer.name=sgd,adam",
            "optimizer.betas=[0.9,0.99],[0.8,0.999]",
        ]
    )
    assert got == {
        "optimizer.lr": [1e-4, 1e-3, 1e-2, 1e-1],
        "optimizer.momentum": [0.0, 0.3, 0.6, 0.9],
        "model.dropout": [0, 0.3],
        "optimizer.name": ["sgd", "adam"],
        "optimizer.betas": [[0.9, 0.99], [0.8, 0.999]],
    }


def test_a_malformed_vary_item_is_a_one_line_cli_error(config, tmp_path, run_cli):
    code, _, err = run_cli(
        "sweep",
        str(config),
        "--vary",
        "optimizer.lr=logspace(1e-3,1e-1)",
        "--out",
        str(tmp_path / "s"),
    )
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(
        "trainlab: error: --vary 'optimizer.lr=logspace(1e-3,1e-1)': write logspace"
    )
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("optimizer.lr", "expected KEY=SPEC"),
        ("optimizer.lr=logspace(1e-3,1e-1)", "logspace(a,b,n)"),
        ("optimizer.lr=logspace(0,1,3)", "a, b > 0"),
        ("optimizer.lr=linspace(0,1,2.5)", "integer ≥ 1"),
        ("optimizer.lr=0.1,0.1", "repeated"),
    ],
)
def test_a_malformed_vary_item_is_an_error_naming_it(item, says):
    with pytest.raises(VaryError, match=r"--vary") as err:
        parse_vary([item])
    assert says in str(err.value)


# --------------------------------------------------------------------------- sweep


def test_sweep_writes_each_run_as_fit_writes_it_a_table_and_a_report(config, tmp_path, run_cli):
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(
        "sweep", str(config), "--vary", "optimizer.lr=[0.003,0.03]", "--seeds", "2",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert f"sweep directory: {out}" in stdout and "4 runs trained together" in stdout
    runs = sorted(p.parent for p in out.glob("*/seed*/summary.json"))
    assert [r.relative_to(out).as_posix() for r in runs] == [
        "optimizer.lr=0.003/seed0",
        "optimizer.lr=0.003/seed1",
        "optimizer.lr=0.03/seed0",
        "optimizer.lr=0.03/seed1",
    ]
    for name in ("sweep.csv", "sweep.md", "sweep.json", "report.html", "config.yaml"):
        assert (out / name).is_file(), name
    assert f"report (4 best of 4 runs): {out / 'report.html'}" in stdout
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    result = json.loads((out / "sweep.json").read_text())
    assert [v["runs"] for v in result["variants"]] == [2, 2]
    assert len(result["report_runs"]) == 4 and "report" not in result  # the CLI renders

    # one of them, trained by `trainlab fit` alone, is the same run
    fitted = tmp_path / "fit"
    code, _, err = run_cli(
        "fit", str(config), "--set", "optimizer.lr=0.03", "--set", "seed=1", "--out",
        str(fitted), "--quiet",
    )  # fmt: skip
    assert code == 0, err

    def lines(path):
        return [json.loads(x) for x in path.read_text().splitlines()]

    alone = lines(fitted / "metrics.jsonl")
    together = lines(out / "optimizer.lr=0.03/seed1/metrics.jsonl")
    assert len(alone) == len(together) == 4
    for a, b in zip(alone, together):
        for key in a:
            if key != "seconds":
                assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-6), key
    s_alone = json.loads((fitted / "summary.json").read_text())
    s_together = json.loads((out / "optimizer.lr=0.03/seed1/summary.json").read_text())
    assert s_alone["best_epoch"] == s_together["best_epoch"]
    for part in ("train", "val", "test"):
        for key, value in s_alone[part].items():
            assert math.isclose(value, s_together[part][key], rel_tol=1e-5, abs_tol=1e-6)


def test_varying_the_architecture_is_a_one_line_error_naming_the_key_and_the_allowed_keys(
    config, tmp_path, run_cli
):
    code, out, err = run_cli(
        "sweep", str(config), "--vary", "model.hidden=[8],[16]", "--out", str(tmp_path / "s")
    )
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("trainlab: error: --vary model.hidden")
    assert "seed, model.dropout, model.init, optimizer.*, schedule.*" in err
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- compare


def test_compare_trains_batched_when_it_can_with_the_results_of_training_one_by_one(
    config, tmp_path
):
    messages = []
    kw = dict(vary=["optimizer.name=sgd,adam"], seeds=2, tune_lr=2, quiet=True)
    batched = compare(config, out=tmp_path / "b", echo=messages.append, **kw)
    single = compare(config, out=tmp_path / "s", echo=lambda m: None, batch=False, **kw)
    assert any("batched" in m for m in messages)
    for vb, vs in zip(batched["variants"], single["variants"]):
        assert vb["lr"] == vs["lr"]
        for key in ("final_val", "best_val", "test"):
            b, s = vb["summary"][key]["mean"], vs["summary"][key]["mean"]
            assert math.isclose(b, s, rel_tol=1e-6, abs_tol=1e-9), key


def test_compare_trains_one_by_one_when_the_architecture_differs(config, tmp_path):
    messages = []
    compare(config, ["model.hidden=[4],[8]"], out=tmp_path / "c", echo=messages.append, quiet=True)
    assert any("one after another" in m and "model.hidden" in m for m in messages)


# --------------------------------------------------------------------------- tune --batch

_SPACE = """tune:
  trials: 4
  pruner: none
  space:
    optimizer.lr: loguniform(1e-3, 1e-1)
    model.dropout: uniform(0.0, 0.5)
"""


def test_tune_batch_tells_each_trial_the_value_its_own_objective_would(config, tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(config.read_text() + _SPACE)
    summary = tune(path, out=tmp_path / "study", batch=4, quiet=True, echo=lambda m: None)
    assert summary["trials"]["complete"] == 4
    study = optuna.load_study(
        study_name="table",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "study/study.journal"))
        ),
    )
    trials = study.get_trials()
    assert len(trials) == 4 and trials[0].user_attrs.get("default")
    from trainlab.config import load_config
    from trainlab.data import Split

    objective = objective_for(load_config(path), Split.load(tmp_path / "study/split.json"))
    again = objective(optuna.trial.FixedTrial(trials[2].params))
    assert math.isclose(again, trials[2].value, rel_tol=1e-6)


def test_tune_batch_refuses_a_space_that_changes_the_architecture(config, tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(config.read_text() + _SPACE + "    model.hidden: [[8], [16]]\n")
    with pytest.raises(TuneError, match="model.hidden"):
        tune(path, out=tmp_path / "study", batch=2, quiet=True, echo=lambda m: None)
    assert not (tmp_path / "study").exists()
