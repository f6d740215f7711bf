"""The pytest plugin, run the way a user runs it.

Each test writes a user's test module into a temporary directory and runs
``python -m pytest`` on it in a subprocess, where the plugin is loaded
through its ``pytest11`` entry point, then checks the outcome counts and
what pytest printed. PostgreSQL and MySQL runs are expected to pass when
the servers of the project's own suite answer, and to be skipped (saying
which URL was tried) when they do not.

The helpers the plugin exports (``drain`` on a SQL backend, the assertions,
``CapturedEvents``) are also tested in-process at the end, where their
details are quicker to reach.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from job_workflow import Workflow, argument, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.backends.sql import (
    DatabaseUnavailableError,
    SchemaMissingError,
    SqlBackend,
)
from job_workflow.clock import ManualClock
from job_workflow.core._events import Event
from job_workflow.testing import (
    CapturedEvents,
    assert_event_sequence,
    assert_failed,
    assert_succeeded,
    drain,
)

SERVER_URLS = {
    "postgresql": (
        "JOB_WORKFLOW_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mysql": (
        "JOB_WORKFLOW_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
    ),
}
CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"
# Plugins a user may have that this test does not need: hypothesis's alone
# costs seconds of start-up per run.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def server_url(kind: str) -> str:
    variable, default = SERVER_URLS[kind]
    return os.environ.get(variable) or default


@functools.cache
def server_answers(kind: str) -> bool:
    """Whether the project's test server of ``kind`` accepts connections."""
    backend = SqlBackend(server_url(kind), table_prefix="jw_probe_")
    try:
        backend.paused_queues()  # no such table: the server still answered
    except SchemaMissingError:
        return True
    except (DatabaseUnavailableError, ValueError):
        return False
    finally:
        backend.close()
    return True


def run_pytest(
    directory: Path,
    modules: dict[str, str],
    *args: str,
    env: dict[str, str | None] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """Write ``modules`` into ``directory`` and run pytest there, as a user would."""
    for name, source in modules.items():
        (directory / name).write_text(textwrap.dedent(source), encoding="utf-8")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "JOB_WORKFLOW_"))
    }
    for key, value in (env or {}).items():
        if value is not None:
            environment[key] = value
    process = subprocess.run(
        [sys.executable, "-m", "pytest", *QUIET_PLUGINS, "-rs", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = process.stdout + process.stderr
    last = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {
        word.rstrip("s") if word.startswith("error") else word: int(n)
        for n, word in SUMMARY.findall(last)
    }
    return process, counts


# --- a user's test module using every fixture and the marker -----------------

USER_MODULE = """
import pytest

from job_workflow import Workflow, WorkflowStatus, argument, task
from job_workflow._runtime import current_backend, current_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.backends.sql import SchemaMissingError, SqlBackend
from job_workflow.clock import ManualClock
from job_workflow.simulator import Simulation
from job_workflow.testing import (
    CapturedEvents,
    assert_event_sequence,
    assert_failed,
    assert_succeeded,
    drain,
    run_task,
)

failures = {"left": 0}


class Orders(Workflow):
    name = "user.Orders"

    amounts = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.amounts, enqueue={"concurrency": 2},
          retry={"count": 2, "base_delay": 10}, output={"cents": int})
    def convert(self, ctx):
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("rates service down")
        return {"cents": ctx.each_value * 100}

    @task(depends_on=[convert], dependency_wait=30, output={"total": int})
    def total(self, ctx):
        return {"total": sum(o.cents for o in ctx.output["convert"])}


class Broken(Workflow):
    name = "user.Broken"

    @task
    def charge(self, ctx):
        raise ValueError("card declined")


seen = {}


def test_workflow_backend_is_a_fresh_queued_memory_backend(
    workflow_backend, manual_clock
):
    assert isinstance(workflow_backend, MemoryBackend)
    assert workflow_backend.mode == "queued"
    assert current_backend() is workflow_backend
    assert workflow_backend.jobs() == []
    seen["memory"] = workflow_backend

    handle = Orders.perform_later(amounts=[1])
    assert handle.status() == "pending"
    drain(workflow_backend)
    assert assert_succeeded(handle).output["total"][0].total == 100


def test_the_backend_is_restored_after_the_test():
    assert current_backend() is not seen["memory"]


def test_inline_backend_runs_jobs_at_once(inline_backend):
    assert inline_backend.mode == "inline"
    handle = Orders.perform_later(amounts=[2, 3])
    assert handle.status() == "succeeded"


def test_sql_backend_is_sqlite_in_tmp_path_with_fresh_tables(
    sql_backend, tmp_path, manual_clock
):
    assert isinstance(sql_backend, SqlBackend)
    assert sql_backend.dialect == "sqlite"
    assert str(tmp_path) in sql_backend.url
    assert sql_backend.table_prefix.startswith("jw_t")
    assert current_backend() is sql_backend
    seen["sql_backend"] = sql_backend

    handle = Orders.perform_later(amounts=[4])
    drain()
    assert_succeeded(handle)


def test_simulation_is_a_factory(simulation):
    first = simulation(workers=2, seed=7)
    assert isinstance(first, Simulation)
    result = first.run(Orders, amounts=[1, 2, 3])
    result.check()
    again = simulation(workers=2, seed=7).run(Orders, amounts=[1, 2, 3])
    assert again.digest == result.digest
    assert list(result.outputs.values())[0]["total"][0]["total"] == 600


def test_captured_events_lists_every_event_in_order(captured_events, inline_backend):
    assert isinstance(captured_events, CapturedEvents)
    Orders.perform_now(amounts=[1, 2])
    assert captured_events.names()[0] == "workflow.start"
    assert captured_events.names()[-1] == "workflow.complete"
    assert captured_events.names("task.enqueue") == ["task.enqueue"]
    starts = captured_events.named("task.start")
    assert [e.payload["task_name"] for e in starts] == ["convert", "convert", "total"]
    assert_event_sequence(
        captured_events,
        [
            "workflow.start",
            ("task.complete", {"task_name": "convert", "each_index": 1}),
            ("task.complete", {"task_name": "total"}),
            "workflow.complete",
        ],
    )


def test_manual_clock_makes_retries_instant(manual_clock, inline_backend):
    assert current_clock() is manual_clock
    failures["left"] = 2
    run = Orders.perform_now(amounts=[5])
    assert run.output["total"][0].total == 500
    assert manual_clock.sleeps == [10.0, 20.0]


def test_run_task(manual_clock):
    output = run_task(Orders, "total", arguments={"amounts": [1, 2]},
                      outputs={"convert": [{"cents": 100}, {"cents": 250}]})
    assert output.total == 350


def test_assert_failed_names_the_error(workflow_backend):
    handle = Broken.perform_later()
    drain(workflow_backend)
    status = assert_failed(handle, ValueError)
    assert status.error.message == "card declined"


@pytest.mark.workflow_backends("memory", "sqlite", "postgresql", "mysql")
def test_on_every_backend(workflow_backend, manual_clock, captured_events, request):
    name = request.node.callspec.params["workflow_backend"]
    if name == "memory":
        assert isinstance(workflow_backend, MemoryBackend)
    else:
        assert isinstance(workflow_backend, SqlBackend)
        assert workflow_backend.dialect == name
        seen[name] = workflow_backend
    assert current_backend() is workflow_backend
    assert request.node.name == f"test_on_every_backend[{name}]"

    failures["left"] = 1
    handle = Orders.perform_later(amounts=[1, 2, 3])
    later = Orders.set(wait=3600).perform_later(amounts=[7])
    drain(workflow_backend, threads=2, timeout=60)

    assert assert_succeeded(handle).output["total"][0].total == 600
    assert assert_succeeded(later).output["total"][0].total == 700
    assert_event_sequence(
        captured_events,
        [
            "workflow.start",
            ("task.retry", {"task_name": "convert", "attempt": 1}),
            ("task.complete", {"task_name": "total"}),
            "workflow.complete",
        ],
    )


@pytest.mark.workflow_backends("memory", "sqlite")
@pytest.mark.usefixtures("workflow_backend")
def test_marker_with_usefixtures():
    handle = Broken.perform_later()
    drain()
    assert_failed(handle, "ValueError")


def test_sql_tables_were_dropped_after_each_test():
    sql = [backend for key, backend in seen.items() if key != "memory"]
    assert sql, "no SQL backend was used"
    for backend in sql:
        with pytest.raises(SchemaMissingError):
            backend.jobs()
        backend.close()
"""


def test_a_user_module_using_every_fixture_and_the_marker_passes(tmp_path):
    env = {variable: server_url(kind) for kind, (variable, _) in SERVER_URLS.items()}
    process, counts = run_pytest(
        tmp_path, {"test_user.py": USER_MODULE}, "--strict-markers", env=env
    )
    output = process.stdout + process.stderr

    servers = [kind for kind in SERVER_URLS if server_answers(kind)]
    skipped = len(SERVER_URLS) - len(servers)
    assert counts == {
        "passed": 16 - skipped,
        **({"skipped": skipped} if skipped else {}),
    }, output
    assert process.returncode == 0, output
    for kind in SERVER_URLS:
        if kind not in servers:
            assert server_url(kind).split("@")[-1] in output


# --- a failing user test reads well ------------------------------------------

FAILING_MODULE = """
from job_workflow import Workflow, task
from job_workflow.testing import assert_event_sequence, assert_succeeded, drain


class Checkout(Workflow):
    name = "user.Checkout"

    @task
    def reserve(self, ctx):
        pass

    @task(depends_on=["reserve"])
    def charge(self, ctx):
        raise ValueError("card declined")


def test_checkout_succeeds(workflow_backend):
    handle = Checkout.perform_later()
    drain(workflow_backend)
    assert_succeeded(handle)


def test_checkout_not_drained(workflow_backend):
    handle = Checkout.perform_later()
    assert_succeeded(handle)


def test_event_order(inline_backend, captured_events):
    Checkout.perform_later()
    assert_event_sequence(captured_events, ["workflow.start", "workflow.complete"])
"""


def test_a_failing_user_test_shows_a_readable_failure(tmp_path):
    process, counts = run_pytest(tmp_path, {"test_checkout.py": FAILING_MODULE})
    output = process.stdout

    assert counts == {"failed": 3}, output
    assert "is failed, expected succeeded" in output
    assert "task 'charge' failed: ValueError: card declined" in output
    assert "is pending, expected succeeded" in output
    assert "hint: jobs run only when workers take them" in output
    assert "expected event sequence not found: 1 of 2 matched" in output
    assert "MISSING  workflow.complete  (none after event #1)" in output
    assert "task.error                   task_name='charge'" in output
    # pytest shows the user's line and the message, not the helpers' frames.
    assert "job_workflow" + os.sep + "testing" not in output
    assert "__tracebackhide__" not in output
    assert output.count(">       assert_succeeded(handle)") == 2
    assert "Traceback" not in output


# --- usage errors at collection ----------------------------------------------

USAGE_MODULES = {
    "test_unknown.py": """
        import pytest

        @pytest.mark.workflow_backends("memory", "oracle")
        def test_x(workflow_backend):
            pass
    """,
    "test_no_fixture.py": """
        import pytest

        @pytest.mark.workflow_backends("sqlite")
        def test_y():
            pass
    """,
    "test_empty.py": """
        import pytest

        @pytest.mark.workflow_backends()
        def test_z(workflow_backend):
            pass
    """,
}


def test_a_wrong_marker_fails_collection_with_a_clear_message(tmp_path):
    process, counts = run_pytest(tmp_path, USAGE_MODULES)
    output = process.stdout

    assert counts == {"error": 3}, output
    assert process.returncode == 2
    assert (
        "test_unknown.py::test_x: @pytest.mark.workflow_backends: unknown backend "
        "'oracle'; choose from 'memory', 'sqlite', 'postgresql', 'mysql'"
    ) in output
    assert (
        "test_no_fixture.py::test_y: @pytest.mark.workflow_backends chooses the "
        "backend of the workflow_backend fixture, but the test does not use it"
    ) in output
    assert "workflow_backends() needs at least one backend name" in output
    assert "Traceback" not in output


# --- servers that are not there ----------------------------------------------

SERVER_MODULE = """
import pytest


@pytest.mark.workflow_backends("postgresql", "mysql")
def test_needs_servers(workflow_backend):
    pass
"""


def test_a_server_that_does_not_answer_skips_with_its_url(tmp_path):
    process, counts = run_pytest(
        tmp_path,
        {"test_servers.py": SERVER_MODULE},
        f"--jw-postgresql-url={CLOSED_PORT_URL}",
    )
    output = process.stdout

    assert counts == {"skipped": 2}, output
    assert "PostgreSQL server not available: cannot reach" in output
    assert "127.0.0.1:1/test" in output
    assert (
        "no MySQL server configured: pass --jw-mysql-url=URL or set "
        "JOB_WORKFLOW_TEST_MYSQL_URL"
    ) in output


def test_required_servers_fail_instead_of_skipping(tmp_path):
    process, counts = run_pytest(
        tmp_path,
        {"test_servers.py": SERVER_MODULE},
        f"--jw-postgresql-url={CLOSED_PORT_URL}",
        env={"JOB_WORKFLOW_REQUIRE_SERVERS": "1"},
    )
    output = process.stdout

    assert counts == {"error": 2}, output
    assert "(servers are required here)" in output
    assert "Traceback" not in output


def test_sql_backend_uses_the_configured_database(tmp_path):
    database = tmp_path / "given.db"
    module = f"""
        from pathlib import Path

        def test_given(sql_backend):
            assert sql_backend.dialect == "sqlite"
            assert sql_backend.url.endswith("{database}")
            assert Path("{database}").exists()
    """
    process, counts = run_pytest(
        tmp_path,
        {"test_given.py": module},
        env={"JOB_WORKFLOW_TEST_DATABASE_URL": f"sqlite:///{database}"},
    )
    assert counts == {"passed": 1}, process.stdout


# --- the helpers, in-process -------------------------------------------------


class Slow(Workflow):
    name = "tests.testing_plugin.Slow"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"n": int})
    def square(self, ctx):
        return {"n": ctx.each_value**2}

    @task(depends_on=[square], dependency_wait={"poll_timeout": 5}, output={"s": int})
    def add(self, ctx):
        return {"s": sum(o.n for o in ctx.output["square"])}


class Failing(Workflow):
    name = "tests.testing_plugin.Failing"

    @task(each=lambda ctx: [1, 2], enqueue=True)
    def explode(self, ctx):
        if ctx.each_index == 1:
            raise KeyError("missing")

    @task(depends_on=[explode])
    def after(self, ctx):
        pass


@pytest.fixture
def sqlite_backend(tmp_path):
    backend = SqlBackend(
        f"sqlite:///{tmp_path / 'jobs.db'}", table_prefix=f"jw_t{secrets.token_hex(4)}_"
    )
    backend.create_schema()
    clock = ManualClock()
    with use_backend(backend), use_clock(clock):
        yield backend
    backend.drop_schema()
    backend.close()


def test_drain_runs_sql_jobs_and_waits_for_scheduled_ones_on_the_clock(
    sqlite_backend,
):
    soon = Slow.perform_later(items=[1, 2, 3])
    later = Slow.set(wait=7200).perform_later(items=[4])

    drain(sqlite_backend, threads=2, timeout=30)

    assert assert_succeeded(soon).output["add"][0].s == 14
    assert assert_succeeded(later).output["add"][0].s == 16


def test_drain_leaves_paused_queues_alone(sqlite_backend):
    sqlite_backend.pause("default")
    handle = Slow.perform_later(items=[1])
    drain(sqlite_backend, threads=1, timeout=30)
    assert handle.status() == "pending"

    sqlite_backend.resume("default")
    drain(threads=1, timeout=30)
    assert_succeeded(handle)


def test_drain_times_out_and_leaves_the_rest_queued(sqlite_backend):
    class Forever(Workflow):
        name = "tests.testing_plugin.Forever"

        @task(each=lambda ctx: [1], enqueue={"queue": "elsewhere"})
        def part(self, ctx):
            pass

        @task(depends_on=[part])
        def wait(self, ctx):
            pass

    sqlite_backend.pause("elsewhere")
    handle = Forever.perform_later()
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.3s"):
        drain(sqlite_backend, threads=1, timeout=0.3)
    assert handle.status() in ("pending", "running")


def test_drain_rejects_a_bad_thread_count():
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        drain(MemoryBackend("queued"), threads=0)


def test_assert_failed_matches_an_error_of_a_sub_job():
    backend = MemoryBackend("queued")
    with use_backend(backend), use_clock(ManualClock()):
        handle = Failing.perform_later()
        drain(backend)
        status = assert_failed(handle, KeyError)
        assert_failed(handle, "DependencyFailedError")
        with pytest.raises(AssertionError, match="expected TypeError"):
            assert_failed(handle, TypeError)
        with pytest.raises(AssertionError) as failure:
            assert_succeeded(handle.job_id, backend=backend)
    assert status.is_failed
    message = str(failure.value)
    assert "task 'explode'[1] (sub-job " in message
    assert "failed: KeyError: 'missing'" in message
    assert "task 'after' failed: DependencyFailedError" in message


def test_assert_succeeded_on_an_unknown_job_says_so():
    with pytest.raises(AssertionError, match="no workflow job 'nope' on backend"):
        assert_succeeded("nope", backend=MemoryBackend())


def test_assert_event_sequence_checks_order_and_payload_fields():
    events = [
        Event("workflow.start"),
        Event("task.start", {"task_name": "a"}),
        Event("task.start", {"task_name": "b"}),
        Event("workflow.complete"),
    ]
    assert_event_sequence(events, ["workflow.*", ("task.start", {"task_name": "b"})])
    assert_event_sequence(events, [])
    with pytest.raises(AssertionError) as failure:
        assert_event_sequence(
            events,
            [("task.start", {"task_name": "b"}), ("task.start", {"task_name": "a"})],
        )
    message = str(failure.value)
    assert "1 of 2 matched" in message
    assert "ok       task.start task_name='b'  (#3)" in message
    assert "MISSING  task.start task_name='a'  (none after event #3)" in message
    assert "#2   task.start" in message


def test_captured_events_filters_and_prints_briefly():
    captured = CapturedEvents(Event(f"task.{n}") for n in range(10))
    captured.append(Event("workflow.start"))
    assert captured.names("workflow.*") == ["workflow.start"]
    assert captured.named("task.1") == [Event("task.1")]
    assert isinstance(captured.named("*"), CapturedEvents)
    assert repr(captured).startswith("<CapturedEvents: 11 events [task.0, task.1,")
    assert repr(captured).endswith("... 3 more]>")


# --- the surface ------------------------------------------------------------------


def test_the_exports_are_pinned():
    import job_workflow.testing as testing

    assert sorted(testing.__all__) == [
        "CapturedEvents",
        "SimulationFactory",
        "assert_event_sequence",
        "assert_failed",
        "assert_succeeded",
        "drain",
        "run_task",
    ]
    assert all(getattr(testing, name) is not None for name in testing.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        testing.nope


def test_loading_the_plugin_imports_no_helper_database_or_simulator():
    probe = (
        "import sys, job_workflow.testing.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'job_workflow.testing.', 'job_workflow.simulator', 'sqlalchemy'))))"
    )
    process = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert process.stdout.strip() == "['job_workflow.testing.plugin']"
