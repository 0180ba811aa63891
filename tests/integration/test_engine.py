"""DataFlow(): configuration, the in-memory default, file URLs, life cycle, and a clean interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dataflow import (
    ConfigurationError,
    DataFlow,
    EngineError,
    FeatureNotAvailableError,
    LocalRuntime,
    WorkflowBuilder,
)
from dataflow.testing import crash_connection_actor, wait_for_pool
from tests.integration.helpers import count, run_node


def _note_model(db: DataFlow) -> None:
    @db.model
    class Note:
        text: str


# -- the in-memory default ------------------------------------------------------------------------


def test_in_memory_databases_are_private_per_instance() -> None:
    """Two DataFlow() instances never see each other's tables or rows."""
    with DataFlow() as a, DataFlow() as b:
        _note_model(a)
        run_node(a, "NoteCreateNode", {"text": "only in a"})
        _note_model(b)
        assert count(b, "Note") == 0
        run_node(b, "NoteCreateNode", {"text": "b1"})
        run_node(b, "NoteCreateNode", {"text": "b2"})
        assert count(a, "Note") == 1 and count(b, "Note") == 2


def test_in_memory_data_survives_a_replaced_connection(memdb: DataFlow) -> None:
    """Rows written on one connection are seen by the connection that replaces it."""
    _note_model(memdb)
    run_node(memdb, "NoteCreateNode", {"text": "kept"})
    restarts = memdb.pool_stats()["restarts"]
    crash_connection_actor(memdb)
    wait_for_pool(memdb, restarts=restarts + 1, timeout=10)
    assert count(memdb, "Note", {"text": "kept"}) == 1


def test_in_memory_default_writes_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DataFlow() run to completion in an empty working directory leaves it empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with DataFlow() as db:
        _note_model(db)
        for i in range(20):
            run_node(db, "NoteCreateNode", {"text": str(i)})
        assert count(db, "Note") == 20
    assert list(tmp_path.iterdir()) == []


# -- URLs and the environment ---------------------------------------------------------------------


def test_relative_sqlite_url_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///rel.db names rel.db in the current directory, and the data persists across instances."""
    monkeypatch.chdir(tmp_path)
    with DataFlow("sqlite:///rel.db") as db:
        _note_model(db)
        run_node(db, "NoteCreateNode", {"text": "persist"})
    assert (tmp_path / "rel.db").is_file()
    with DataFlow("sqlite:///rel.db") as db:
        _note_model(db)
        assert count(db, "Note", {"text": "persist"}) == 1


def test_absolute_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:////abs/path.db names that absolute path, whatever the working directory."""
    target = tmp_path / "sub" / "abs.db"
    target.parent.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{target}"
    assert url.startswith("sqlite:////")
    with DataFlow(url) as db:
        _note_model(db)
        run_node(db, "NoteCreateNode", {"text": "x"})
    assert target.is_file()
    assert not any(p.suffix == ".db" for p in elsewhere.iterdir())


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no argument, DATABASE_URL selects the database."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with DataFlow() as db:
        _note_model(db)
        run_node(db, "NoteCreateNode", {"text": "x"})
    assert (tmp_path / "env.db").is_file()


def test_argument_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit URL argument is used even when DATABASE_URL is set."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with DataFlow(f"sqlite:///{tmp_path / 'arg.db'}") as db:
        _note_model(db)
        run_node(db, "NoteCreateNode", {"text": "x"})
    assert (tmp_path / "arg.db").is_file() and not (tmp_path / "env.db").exists()


@pytest.mark.parametrize("url", ["nosuchdb://x/y", "not a url", "sqlite://relative.db"])
def test_bad_url_is_a_configuration_error(url: str) -> None:
    """A malformed URL or unknown scheme is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        DataFlow(url)


# -- options --------------------------------------------------------------------------------------


def test_unknown_option_is_an_error_with_a_suggestion() -> None:
    """A misspelt DataFlow option is a ConfigurationError suggesting the right one."""
    with pytest.raises(ConfigurationError, match="pool_size"):
        DataFlow(pool_sise=3)


@pytest.mark.parametrize("option", ["audit_logging", "cache_enabled", "encryption_key", "echo"])
def test_guide_options_not_built_yet_raise(option: str) -> None:
    """An option from the user guide whose feature is not built raises FeatureNotAvailableError, naming it."""
    with pytest.raises(FeatureNotAvailableError, match=option):
        DataFlow(**{option: True})


@pytest.mark.parametrize("kwargs", [{"pool_size": 0}, {"pool_size": -2}, {"pool_timeout": 0}, {"pool_size": 2.5}])
def test_bad_pool_settings_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Nonsensical pool settings are ConfigurationErrors at construction."""
    with pytest.raises(ConfigurationError):
        DataFlow(**kwargs)


# -- life cycle -----------------------------------------------------------------------------------


def test_close_is_idempotent_and_context_manager_closes(db: DataFlow) -> None:
    """close() may be called twice; leaving a with-block closes the instance."""
    db.close()
    db.close()
    assert db.closed
    with DataFlow() as other:
        assert not other.closed
    assert other.closed


def test_operations_after_close_raise_engine_error(db: DataFlow) -> None:
    """After close(), registering a model or running a workflow raises EngineError."""
    _note_model(db)
    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "n", {"text": "x"})
    built = wf.build()
    db.close()
    with pytest.raises(EngineError):
        LocalRuntime().execute(built)

    class Later:
        text: str

    with pytest.raises(EngineError):
        db.model(Later)


def test_pool_stats_shape(db: DataFlow) -> None:
    """pool_stats() reports state and non-negative integer sizes with in_use + idle <= max_size."""
    _note_model(db)
    run_node(db, "NoteCreateNode", {"text": "x"})
    stats = db.pool_stats()
    for key in ("size", "in_use", "idle", "waiting", "restarts", "max_size"):
        assert isinstance(stats[key], int) and stats[key] >= 0, key
    assert isinstance(stats["state"], str)
    assert stats["in_use"] == 0
    assert stats["in_use"] + stats["idle"] <= stats["max_size"]
    assert 1 <= stats["size"] <= stats["max_size"]


# -- the interpreter exits cleanly ----------------------------------------------------------------

_SCRIPT = textwrap.dedent("""
    import os, sys
    from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

    db = DataFlow(os.environ["DF_URL"]) if os.environ.get("DF_URL") else DataFlow()

    @db.model
    class Note:
        text: str

    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "a", {"text": "x"})
    wf.add_node("NoteListNode", "b", {"count_only": True})
    results, _ = LocalRuntime().execute(wf.build())
    assert results["b"]["count"] >= 1, results
    if os.environ.get("DF_CLOSE") == "1":
        db.close()
    print("done", flush=True)
""")


@pytest.mark.parametrize("close", [False, True], ids=["without-close", "with-close"])
@pytest.mark.parametrize("where", ["memory", "engine"])
def test_interpreter_exits_promptly(engine_url: str, tmp_path: Path, close: bool, where: str) -> None:
    """A script that runs a workflow exits promptly with status 0, with or without close()."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DF_CLOSE"] = "1" if close else "0"
    if where == "engine":
        env["DF_URL"] = engine_url
    elif not engine_url.startswith("sqlite"):
        pytest.skip("the in-memory case runs once, with the sqlite parameter")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert elapsed < 30, elapsed
    if where == "memory":
        assert list(tmp_path.iterdir()) == []
