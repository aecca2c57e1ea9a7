"""The throwaway PostgreSQL of the test suite (scripts/postgres.sh, started by `make test`).

These tests skip, naming why, when TRAINLAB_TEST_POSTGRES is not set.
"""

import optuna
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

pytest.importorskip("psycopg")


def test_sqlalchemy_connects_with_psycopg(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == (
                url.database
            )
            version = conn.execute(sqlalchemy.text("SHOW server_version_num")).scalar()
            assert int(version) >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13
    finally:
        engine.dispose()


def test_server_listens_on_loopback_only(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.host == "127.0.0.1"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            listen = conn.execute(sqlalchemy.text("SHOW listen_addresses")).scalar()
            server_addr = conn.execute(sqlalchemy.text("SELECT host(inet_server_addr())")).scalar()
    finally:
        engine.dispose()
    assert listen == "127.0.0.1"
    assert server_addr == "127.0.0.1"


def test_postgres_db_is_fresh_and_separate(postgres_url: str, postgres_db: str) -> None:
    url = make_url(postgres_db)
    assert url.database != make_url(postgres_url).database
    assert url.database.startswith("t_")
    engine = sqlalchemy.create_engine(url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_optuna_rdb_storage_round_trip(postgres_db: str) -> None:
    storage = optuna.storages.RDBStorage(postgres_db)
    study = optuna.create_study(study_name="infra", storage=storage, direction="minimize")
    study.optimize(lambda trial: (trial.suggest_float("x", -1.0, 1.0) - 0.5) ** 2, n_trials=3)
    storage.engine.dispose()

    # Read back through a second, independent storage, as another worker would.
    reader = optuna.storages.RDBStorage(postgres_db)
    try:
        loaded = optuna.load_study(study_name="infra", storage=reader)
        trials = loaded.get_trials(deepcopy=False)
        assert len(trials) == 3
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        for t in trials:
            assert t.value == pytest.approx((t.params["x"] - 0.5) ** 2)
        assert loaded.best_value == min(t.value for t in trials)
    finally:
        reader.engine.dispose()
