"""``job-workflow db upgrade`` runs the packaged Alembic migrations."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine, inspect, text

from job_workflow.backends.sql import SqlBackend
from job_workflow.cli import main
from job_workflow.core.ports import NewJob


def test_db_upgrade_creates_every_table_and_is_idempotent(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert "schema up to date" in capsys.readouterr().out
    names = set(inspect(create_engine(url)).get_table_names())
    assert {"jw_jobs", "jw_ready_executions", "jw_alembic_version"} <= names
    backend = SqlBackend(url)
    [job_id] = backend.enqueue([NewJob(workflow="w", arguments={})], 1.0)
    assert backend.get_job(job_id) is not None
    backend.close()


def test_upgrade_adopts_a_schema_made_by_create_schema(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    backend = SqlBackend(url)
    backend.create_schema()
    backend.upgrade_schema()
    assert "jw_alembic_version" in inspect(create_engine(url)).get_table_names()
    backend.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_upgrade_on_a_server_with_its_own_prefix(kind, make_sql_backend) -> None:
    probe = make_sql_backend(kind)  # skips (or fails in CI) when the server is down
    prefix = f"jw_m{secrets.token_hex(4)}_"
    url = probe._db.engine.url.render_as_string(hide_password=False)
    backend = SqlBackend(url, table_prefix=prefix)
    try:
        backend.upgrade_schema()
        backend.upgrade_schema()
        names = set(inspect(backend._db.engine).get_table_names())
        assert f"{prefix}jobs" in names
        assert f"{prefix}alembic_version" in names
    finally:
        backend.drop_schema()
        with backend._db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
        backend.close()


def test_db_upgrade_without_a_url_is_one_clear_line(capsys, monkeypatch) -> None:
    monkeypatch.delenv("JOB_WORKFLOW_DATABASE_URL", raising=False)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("job-workflow: error: no database")
    assert "Traceback" not in err
