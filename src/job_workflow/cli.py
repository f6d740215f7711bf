"""The ``job-workflow`` command line.

Each command lives in its own function and is added to the parser by a
*registrar* listed in :data:`COMMANDS`; a new command (worker, db, status,
queue, simulate, demo) adds one registrar there and nothing else changes.

Bad input never shows a traceback: a command raises :class:`CommandError`
and :func:`main` prints one line, ``job-workflow: error: ...``, on stderr and
returns 2 for a usage error (bad ``MODULE:Workflow``, unknown module or
attribute, bad JSON, invalid arguments, unknown format) or 1 for a failure
while running (graphviz missing, a failed dry run, a file that cannot be
written).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from job_workflow.core import _codec
from job_workflow.core._workflow import Workflow
from job_workflow.errors import ArgumentValidationError

PROG = "job-workflow"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_EXTENSIONS = {
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".svg": "svg",
    ".png": "png",
}


class CommandError(Exception):
    """A command cannot go on; ``main`` prints the message as one line."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    """Turns argparse's usage errors into CommandError (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        raise CommandError(message + hint, EXIT_USAGE)


Handler = Callable[[argparse.Namespace], int]
Registrar = Callable[["argparse._SubParsersAction[_Parser]"], None]


# -- loading a workflow class named on the command line --


def load_workflow(spec: str) -> type[Workflow]:
    """Import ``MODULE:Workflow`` (the user's explicit choice) and check it.

    The current directory is importable, as with ``python -m``, so
    ``job-workflow graph shop.workflows:Checkout`` works from the project
    root.
    """
    if not _SPEC.match(spec):
        raise CommandError(
            f"expected MODULE:Workflow such as 'shop.workflows:Checkout', got {spec!r}",
            EXIT_USAGE,
        )
    module_name, attribute = spec.split(":")
    module = _import(module_name)
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise CommandError(_missing(module, module_name, attribute), EXIT_USAGE)
        found = getattr(found, part)
    if not (
        isinstance(found, type)
        and issubclass(found, Workflow)
        and found is not Workflow
    ):
        raise CommandError(
            f"{spec} is {_kind(found)}, not a Workflow subclass", EXIT_USAGE
        )
    return found


def _import(module_name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CommandError(
                f"module {module_name!r} not found; run from the directory "
                "that contains it or add that directory to PYTHONPATH",
                EXIT_USAGE,
            ) from None
        raise CommandError(
            f"importing {module_name!r} failed: {_one_line(exc)}"
        ) from None
    except Exception as exc:
        raise CommandError(
            f"importing {module_name!r} failed: {_one_line(exc)}"
        ) from None


def _missing(module: Any, module_name: str, attribute: str) -> str:
    workflows = sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, Workflow)
        and value is not Workflow
    )
    close = difflib.get_close_matches(attribute, workflows, n=1)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif workflows:
        hint = f"; workflows in it: {', '.join(workflows)}"
    else:
        hint = "; it defines no Workflow subclass"
    return f"module {module_name!r} has no attribute {attribute!r}{hint}"


def _kind(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _one_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[:1]
    return ": ".join([type(exc).__name__, *first])


# -- graph --


def _register_graph(commands: argparse._SubParsersAction[_Parser]) -> None:
    parser = commands.add_parser(
        "graph",
        help="draw a workflow's task graph (DOT, Mermaid, SVG, PNG)",
        description="Draw the task graph of a workflow class.",
        epilog=_examples(
            "job-workflow graph shop.workflows:Checkout",
            "job-workflow graph shop.workflows:Checkout --format mermaid",
            "job-workflow graph shop.workflows:Checkout -o checkout.svg",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", metavar="MODULE:Workflow")
    _output_options(parser, "the picture")
    parser.set_defaults(handler=_graph)


def _graph(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.workflow)
    _draw(workflow, args.output, args.format)
    return EXIT_OK


# -- dry-run --


def _register_dry_run(commands: argparse._SubParsersAction[_Parser]) -> None:
    parser = commands.add_parser(
        "dry-run",
        help="run a workflow with its side effects held back and report",
        description=(
            "Run a workflow with dry-run mode forced on (in memory, no real "
            "waits) and print what each task did. Exits 1 when a task failed."
        ),
        epilog=_examples(
            "job-workflow dry-run shop.workflows:Checkout --args '{\"order_id\": 7}'",
            "job-workflow dry-run shop.workflows:Checkout --args '{}' -o run.svg",
            "job-workflow dry-run shop.workflows:Checkout --args '{}' --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", metavar="MODULE:Workflow")
    parser.add_argument(
        "--args",
        metavar="JSON",
        default="{}",
        help="the workflow's arguments as a JSON object (default: {})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON, not a table"
    )
    _output_options(parser, "the report drawn over the graph")
    parser.set_defaults(handler=_dry_run)


def _dry_run(args: argparse.Namespace) -> int:
    from job_workflow._dry_run import dry_run

    workflow = load_workflow(args.workflow)
    arguments = _json_arguments(workflow, args.args)
    try:
        report = dry_run(workflow, **arguments)
    except ArgumentValidationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if args.output is not None or args.format is not None:
        _draw(report, args.output, args.format)
    elif args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report)
    if report.error is not None:
        raise CommandError(f"the dry run failed: {_one_line(report.error)}")
    return EXIT_OK


def _json_arguments(workflow: type[Workflow], text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--args is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(data, dict):
        raise CommandError(
            f"--args must be a JSON object such as '{{\"items\": [1, 2]}}', "
            f"got {type(data).__name__}",
            EXIT_USAGE,
        )
    return _typed(workflow, data)


def _typed(workflow: type[Workflow], data: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild dates, decimals, ... from their JSON form where that works.

    A value that does not decode is passed on unchanged, so the workflow's
    own validation reports it with its usual message.
    """
    values = dict(data)
    for name, value in data.items():
        spec = workflow.arguments.get(name)
        if spec is None:
            continue
        try:
            decoded = _codec.decode(value, spec.type, name)
            _codec.check(decoded, spec.type)
        except Exception:
            continue
        values[name] = decoded
    return values


# -- shared by graph and dry-run --


def _output_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=f"write {what} to FILE; the format follows its extension "
        "(.dot .gv .mmd .mermaid .svg .png)",
    )
    parser.add_argument(
        "--format",
        choices=("dot", "mermaid", "svg", "png"),
        help="output format (default: from -o's extension, else dot on stdout)",
    )


def _draw(obj: Any, output: str | None, format: str | None) -> None:
    try:
        from job_workflow import viz
        from job_workflow.viz._render import run_dot
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    chosen = format or _format_of(output) or "dot"
    try:
        if output is not None:
            viz.render(obj, output, chosen)
            print(f"wrote {output} ({chosen})")
        elif chosen == "png":
            raise CommandError("png is binary: give a file with -o", EXIT_USAGE)
        elif chosen == "svg":
            sys.stdout.write(run_dot(viz.to_dot(obj), "svg").decode("utf-8"))
        else:
            text = viz.to_dot(obj) if chosen == "dot" else viz.to_mermaid(obj)
            sys.stdout.write(text)
    except viz.RenderError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None


def _format_of(output: str | None) -> str | None:
    if output is None:
        return None
    suffix = Path(output).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = " ".join(_EXTENSIONS)
        raise CommandError(
            f"cannot tell the format of {output!r} from its extension "
            f"(known: {known}); add --format",
            EXIT_USAGE,
        )
    return _EXTENSIONS[suffix]


# -- the parser and main --


# -- simulate --


def _register_simulate(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``simulate`` lives in its own module, which imports this one."""
    from job_workflow import _cli_simulate

    _cli_simulate.register(commands)


COMMANDS: dict[str, Registrar] = {
    "graph": _register_graph,
    "dry-run": _register_dry_run,
    "simulate": _register_simulate,
}


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> _Parser:
    """The top-level parser with every registered command."""
    parser = _Parser(
        prog=PROG,
        description="Declarative workflows on a job queue: tools.",
        epilog=_examples(
            "job-workflow graph shop.workflows:Checkout -o checkout.svg",
            "job-workflow dry-run shop.workflows:Checkout --args '{\"order_id\": 7}'",
            "job-workflow COMMAND --help",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    for register in {**COMMANDS, **_operations()}.values():
        register(commands)
    return parser


def _operations() -> dict[str, Registrar]:
    """Commands that run against a database; their module imports this one."""
    from job_workflow import _cli_ops

    return {
        "demo": _cli_ops.register_demo,
        "worker": _cli_ops.register_worker,
        "db": _cli_ops.register_db,
        "status": _cli_ops.register_status,
        "queue": _cli_ops.register_queue,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, 1 failure, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handler(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help and --version end here
        return exc.code if isinstance(exc.code, int) else EXIT_OK


if __name__ == "__main__":
    # ``python -m job_workflow.cli`` runs this file as ``__main__``, a second
    # copy of the module: the commands raise ``job_workflow.cli.CommandError``,
    # which this copy's ``main`` would not recognise. Run the real one.
    from job_workflow.cli import main as _main

    raise SystemExit(_main())
