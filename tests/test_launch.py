"""``trainlab fit --nproc N``: the launcher checks the config once before any process
starts, and names the rank whose failure stopped the run."""

from __future__ import annotations

from trainlab.launch import _failure


def test_nproc_checks_the_config_once_before_starting(run_cli, tmp_path):
    code, _, err = run_cli("fit", str(tmp_path / "missing.yaml"), "--nproc", "2")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trainlab: error:") and "missing.yaml" in err
    code, _, err = run_cli("fit", "--resume", str(tmp_path), "--nproc", "2")
    assert code == 2 and "no config.yaml" in err


class _Failure:
    def __init__(self, exitcode: int, timestamp: int = 0):
        self.exitcode, self.timestamp = exitcode, timestamp

    def signal_name(self) -> str:
        import signal

        return signal.Signals(-self.exitcode).name


class _Failed:
    def __init__(self, **failures):
        self.failures = {int(rank[1:]): f for rank, f in failures.items()}


def test_the_launcher_names_the_rank_that_caused_the_failure(tmp_path):
    # rank 1 killed; rank 0 stopped by the launcher's SIGTERM in the same second
    err = _failure(_Failed(r0=_Failure(-15), r1=_Failure(-9)), 2, tmp_path)
    assert str(err).startswith("rank 1 of 2 was killed by SIGKILL;") and err.exit_code == 1
    assert str(err).endswith(f"start it again with: trainlab fit --resume {tmp_path} --nproc 2")
    # a user error on every rank: rank 0 printed it, the launcher adds nothing
    err = _failure(_Failed(r0=_Failure(2), r1=_Failure(2)), 2, tmp_path)
    assert str(err) == "" and err.exit_code == 2
    # a crash (exit 3) over the peers that lost it (exit 1)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    err = _failure(_Failed(r0=_Failure(1, 5), r1=_Failure(3, 4)), 2, tmp_path)
    assert str(err).startswith("rank 1 of 2 failed with exit status 3;")
    assert "continue from its last checkpoint" in str(err)
