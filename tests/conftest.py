"""Test-suite settings shared by every test directory."""

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so a red CI is reproducible; run
# with --hypothesis-profile=explore to search afresh.
settings.register_profile("default", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=500, print_blob=True)
settings.load_profile("default")


# --- PostgreSQL: the Makefile's `test` target starts a throwaway server (scripts/postgres.sh)
# and passes its URL (postgresql+psycopg://postgres@127.0.0.1:PORT/trainlab) in
# TRAINLAB_TEST_POSTGRES; without it the tests that need one skip.


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The throwaway server's `trainlab` database, as a SQLAlchemy URL."""
    url = os.environ.get("TRAINLAB_TEST_POSTGRES")
    if not url:
        pytest.skip(
            "TRAINLAB_TEST_POSTGRES is not set: the Makefile's test target starts a throwaway "
            "PostgreSQL"
        )
    return url


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test (its SQLAlchemy URL), dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    # psycopg takes a libpq URL: the same one without SQLAlchemy's "+psycopg" driver name.
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: ``code, out, err = run_cli("fit", CONFIG, ...)``."""
    from trainlab.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


@pytest.fixture(scope="module")
def bench_module(request):
    """The script at the requesting test module's ``BENCH`` path, imported as a module.

    bench/ is not a package; the module is registered in ``sys.modules`` (dataclasses look
    their module up there) while the test module's tests run.
    """
    import importlib.util
    import sys

    path = request.module.BENCH
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
