"""Operations commands of the CLI: worker, db, status, queue.

They all work against a database URL (``--database-url`` or the
``JOB_WORKFLOW_DATABASE_URL`` environment variable) and report every bad
input as one line: a malformed URL, a database that does not answer, a
module that cannot be imported, an unknown job id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from job_workflow._runtime import DATABASE_URL_ENV
from job_workflow.cli import EXIT_OK, EXIT_USAGE, CommandError, _examples, _one_line

DEFAULT_HEARTBEAT = 60.0
DEFAULT_ALIVE = 300.0


def _url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"SQLAlchemy URL of the queue database (default: ${DATABASE_URL_ENV})",
    )
    parser.add_argument(
        "--table-prefix", default="jw_", help="prefix of the tables (default: jw_)"
    )


def _backend(args: argparse.Namespace) -> Any:
    if not args.database_url:
        raise CommandError(
            f"no database: pass --database-url or set {DATABASE_URL_ENV}", EXIT_USAGE
        )
    from job_workflow.backends.sql import SqlBackend

    try:
        return SqlBackend(args.database_url, table_prefix=args.table_prefix)
    except ValueError as exc:
        raise CommandError(_one_line(exc), EXIT_USAGE) from exc
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


# -- demo --


def register_demo(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="draw, dry-run, simulate and run the example workflow on SQLite",
        description=(
            "Show the whole product on one example workflow: its graph, a dry "
            "run, a simulation over many seeds with faults, and a real run on "
            "SQLite with a supervisor and two worker processes."
        ),
        epilog=_examples("job-workflow demo", "job-workflow demo --out /tmp/demo"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="out/demo", help="where files go")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from job_workflow._demo import main as run_demo

    run_demo(Path(args.out))
    return EXIT_OK


# -- worker --


def register_worker(commands: Any) -> None:
    parser = commands.add_parser(
        "worker",
        help="run a supervisor with worker processes against a database",
        description=(
            "Start a supervisor that spawns worker processes (each with a pool of "
            "threads), dispatches due scheduled jobs, fires @schedule runs and "
            "releases the jobs of dead processes. SIGTERM or Ctrl-C: running jobs "
            "finish, then exit 0; a second Ctrl-C exits at once."
        ),
        epilog=_examples(
            "job-workflow worker --database-url sqlite:///jobs.db --import shop.flows",
            "job-workflow worker --database-url postgresql+psycopg://db/jobs \\",
            "    --import shop.flows --queues default,etl --processes 4 --threads 5",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _url_option(parser)
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module defining workflows (repeat or comma-separate)",
    )
    parser.add_argument("--queues", help="comma-separated queues (default: all)")
    parser.add_argument("--processes", type=_count, default=1)
    parser.add_argument("--threads", type=_count, default=3)
    parser.add_argument(
        "--heartbeat-interval", type=_positive, default=DEFAULT_HEARTBEAT
    )
    parser.add_argument("--alive-threshold", type=_positive, default=DEFAULT_ALIVE)
    parser.add_argument("--polling-interval", type=_positive, default=0.1)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the job_workflow logger on stderr (default: INFO)",
    )
    parser.add_argument(
        "--log-json", action="store_true", help="log one JSON object per line"
    )
    parser.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from job_workflow.backends._supervisor import (
        Supervisor,
        WorkerConfig,
        import_workflows,
    )

    _configure_logging(args.log_level, json_lines=args.log_json)
    modules = tuple(m for item in args.imports for m in item.split(",") if m)
    _import_modules(modules, import_workflows)
    backend = _backend(args)
    _check_database(backend)
    config = WorkerConfig(
        database_url=args.database_url,
        imports=modules,
        queues=tuple(q for q in (args.queues or "").split(",") if q) or None,
        processes=args.processes,
        threads=args.threads,
        heartbeat_interval=args.heartbeat_interval,
        alive_threshold=args.alive_threshold,
        polling_interval=args.polling_interval,
        table_prefix=args.table_prefix,
    )
    try:
        return Supervisor(config).run(backend)
    finally:
        backend.close()


def _configure_logging(level: str, *, json_lines: bool) -> None:
    """The worker is an application: it may add a handler; the library never does."""
    import logging

    from job_workflow.logging import JsonFormatter, LogSubscriber

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    logger = logging.getLogger("job_workflow")
    logger.addHandler(handler)
    logger.setLevel(level)
    LogSubscriber.subscribe()


def _import_modules(modules: tuple[str, ...], importer: Any) -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importer([module])
        except ModuleNotFoundError as exc:
            raise CommandError(
                f"cannot import --import module {module!r}: {_one_line(exc)}",
                EXIT_USAGE,
            ) from exc
        except Exception as exc:
            raise CommandError(
                f"importing {module!r} failed: {_one_line(exc)}"
            ) from exc


def _check_database(backend: Any) -> None:
    try:
        backend.paused_queues()
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc


# -- db --


def register_db(commands: Any) -> None:
    parser = commands.add_parser(
        "db",
        help="manage the queue database schema",
        description="Create or upgrade the tables of the SQL backend.",
        epilog=_examples("job-workflow db upgrade --database-url sqlite:///jobs.db"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="create or upgrade the tables")
    _url_option(upgrade)
    upgrade.set_defaults(handler=_db_upgrade)


def _db_upgrade(args: argparse.Namespace) -> int:
    backend = _backend(args)
    try:
        backend.upgrade_schema()
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc
    finally:
        backend.close()
    print(f"schema up to date ({args.table_prefix}* tables)")
    return EXIT_OK


# -- status --


def register_status(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="show a workflow's status",
        description="Print the status of a workflow job as JSON.",
        epilog=_examples(
            "job-workflow status 3f2a... --database-url sqlite:///jobs.db"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job_id")
    _url_option(parser)
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from job_workflow._status import WorkflowStatus

    backend = _backend(args)
    try:
        found = WorkflowStatus.find_by(job_id=args.job_id, backend=backend)
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc
    finally:
        backend.close()
    if found is None:
        raise CommandError(f"no workflow job with id {args.job_id!r}")
    print(json.dumps(found.to_dict(), indent=2, sort_keys=True, default=str))
    return EXIT_OK


# -- queue --


def register_queue(commands: Any) -> None:
    parser = commands.add_parser(
        "queue",
        help="pause, resume, list or clear queues",
        description="Operate on the queues of the database.",
        epilog=_examples(
            "job-workflow queue list --database-url sqlite:///jobs.db",
            "job-workflow queue pause etl --database-url sqlite:///jobs.db",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action in ("pause", "resume", "clear"):
        sub = actions.add_parser(action, help=f"{action} a queue")
        sub.add_argument("queue")
        _url_option(sub)
        sub.set_defaults(handler=_queue_action)
    listing = actions.add_parser("list", help="list queues with size, latency, paused")
    _url_option(listing)
    listing.set_defaults(handler=_queue_list)


def _queue_action(args: argparse.Namespace) -> int:
    from job_workflow._queue import Queue

    backend = _backend(args)
    try:
        if args.action == "pause":
            Queue.pause(args.queue, backend=backend)
            print(f"paused {args.queue}")
        elif args.action == "resume":
            Queue.resume(args.queue, backend=backend)
            print(f"resumed {args.queue}")
        else:
            cleared = Queue.clear(args.queue, backend=backend)
            print(f"cleared {cleared} job(s) of {args.queue}")
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc
    finally:
        backend.close()
    return EXIT_OK


def _queue_list(args: argparse.Namespace) -> int:
    from job_workflow._queue import Queue

    backend = _backend(args)
    try:
        paused = set(backend.paused_queues())
        names = sorted({job.queue for job in backend.jobs()} | paused)
        print(f"{'queue':<24} {'ready':>7} {'latency s':>10}  paused")
        for name in names:
            print(
                f"{name:<24} {Queue.size(name, backend=backend):>7} "
                f"{Queue.latency(name, backend=backend):>10.1f}  "
                f"{'yes' if name in paused else 'no'}"
            )
    except (ConnectionError, RuntimeError) as exc:
        raise CommandError(_one_line(exc)) from exc
    finally:
        backend.close()
    return EXIT_OK
