"""Where a study lives: an Optuna journal file, or a database that may restart.

The default storage is a journal file in the study's directory (:data:`STORAGE_FILE`):
the same command again resumes the study, and several local worker processes may share
it. A database URL (PostgreSQL, for workers on many machines) opens a storage with
heartbeats that rides out a restart of the server (:class:`_ReconnectingRDBStorage`).
SQLite is accepted for one worker only.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from trainlab.errors import UserError, first_line

__all__ = [
    "GRACE",
    "HEARTBEAT_INTERVAL",
    "RECONNECT_SECONDS",
    "RETRIES",
    "STORAGE_FILE",
    "TuneError",
    "open_storage",
]

#: The journal file of a study in its directory.
STORAGE_FILE = "study.journal"
#: Heartbeat settings on PostgreSQL: a worker silent for GRACE seconds is dead; its trial
#: is marked failed and retried (up to RETRIES times).
HEARTBEAT_INTERVAL, GRACE, RETRIES = 5, 20, 3
#: How long a call waits for the database to come back (a restart, a failover) before
#: the worker gives up with a clear error; the study itself is safe in the database.
RECONNECT_SECONDS = 60.0


class TuneError(UserError, ValueError):
    """A tuning problem the user can fix (storage, study, workers)."""


def open_storage(spec: str, workers: int = 1) -> Any:
    """An Optuna storage from a journal-file path or a database URL.

    Raises
    ------
    TuneError
        For SQLite with several workers, or a database that cannot be opened (the
        message masks the URL's password).
    """
    if spec.startswith("sqlite"):
        if workers > 1:
            raise TuneError(
                f"--storage {spec}: SQLite loses and duplicates trials under concurrent "
                "workers; use the default journal file (leave --storage out) or PostgreSQL"
            )
        return optuna.storages.RDBStorage(spec)
    if "://" in spec:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _ReconnectingRDBStorage(
                    spec,
                    engine_kwargs={"pool_pre_ping": True},  # a restart leaves dead connections
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=RETRIES
                    ),
                )
        except Exception as err:  # noqa: BLE001 — any connection problem is the user's to fix
            first = _shown(spec, first_line(err))
            raise TuneError(
                f"--storage {_shown(spec)}: cannot open the database: {first}"
            ) from None
    backend = optuna.storages.journal.JournalFileBackend(str(spec))
    return optuna.storages.JournalStorage(backend)


def _shown(url: str, text: str | None = None) -> str:
    """``text`` (default: the URL itself) with the URL's password masked."""
    masked = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    return masked if text is None else text.replace(url, masked)


def _connection_lost(err: BaseException) -> bool:
    """Whether ``err`` says the database could not be reached (not that a query was bad)."""
    import sqlalchemy.exc as sa

    cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
    return isinstance(cause, (sa.OperationalError, sa.InterfaceError)) or (
        isinstance(cause, sa.DBAPIError) and cause.connection_invalidated
    )


def _reconnecting(method: Callable[..., Any]) -> Callable[..., Any]:
    """Retry ``method`` with backoff while the database cannot be reached, for at most
    :data:`RECONNECT_SECONDS`; then raise a :class:`TuneError` that says so."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline, pause = time.monotonic() + RECONNECT_SECONDS, 0.1
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                if not _connection_lost(err):
                    raise
                if time.monotonic() >= deadline:
                    cause = first_line(err.__cause__ or err)
                    self.lost = TuneError(
                        f"the study's database {_shown(str(self.url))} has not answered for "
                        f"{RECONNECT_SECONDS:g} s ({_shown(str(self.url), cause)}); the study "
                        "is safe in it: run the same command again once it is back"
                    )
                    raise self.lost from None
                time.sleep(pause)
                pause = min(2 * pause, 2.0)

    return call


class _ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage that rides out a database restart: a pooled connection the
    restart killed is replaced before use (``pool_pre_ping``), and every call that finds
    the server away is retried (:func:`_reconnecting`). A retried call had not reached
    the database, or its transaction was rolled back with the connection: nothing is
    recorded twice. ``lost`` is the error it gave up with, if it did."""

    lost: TuneError | None = None


# the methods that talk to the database (each opens one session, one transaction)
for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "record_heartbeat",
    "_get_stale_trial_ids",
):
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(
            _ReconnectingRDBStorage,
            _name,
            _reconnecting(getattr(optuna.storages.RDBStorage, _name)),
        )
