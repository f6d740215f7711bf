"""Definition errors users meet, and the error tree they can catch.

Covers the Ruby guide TROUBLESHOOTING.md and SPEC §11 as the Python API
defines them: ``CircularDependencyError`` (its ``.cycle`` path and message),
``UnknownTaskError`` for ``depends_on`` and hook names (with a close-name
suggestion), ``DuplicateTaskError``, ``InvalidOptionError`` for bad option
values (``dependency_wait``, ``enqueue``, ``retry``, ``throttle``,
``timeout``, ``each``, ``condition``), all raised when the class is defined,
and the exception hierarchy exported by ``job_workflow`` and
``job_workflow.errors``.
"""

import itertools

import pytest

import job_workflow
from job_workflow import Workflow, after, around, before, errors, on_error, task
from job_workflow.errors import (
    CircularDependencyError,
    DuplicateTaskError,
    InvalidOptionError,
    UnknownTaskError,
    WorkflowDefinitionError,
    WorkflowError,
)


def _shows_path(error, cycle):
    """The message spells the path, names quoted or not."""
    return " -> ".join(cycle) in str(error).replace("'", "")


def _assert_is_cycle(cycle, dependencies):
    """``cycle`` starts and ends on one task and walks dependency edges."""
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in dependencies.get(a, ()) or a in dependencies.get(b, ()), (a, b)


# --- CircularDependencyError -------------------------------------------------


def test_two_task_cycle_is_rejected_at_definition_with_its_path():
    ran = []

    with pytest.raises(CircularDependencyError) as excinfo:

        class TwoCycle(Workflow):
            @task(depends_on=["b"])
            def a(self, ctx):
                ran.append("a")

            @task(depends_on=["a"])
            def b(self, ctx):
                ran.append("b")

    cycle = excinfo.value.cycle
    _assert_is_cycle(cycle, {"a": ["b"], "b": ["a"]})
    assert set(cycle) == {"a", "b"}
    assert len(cycle) == 3
    assert _shows_path(excinfo.value, cycle)
    assert ran == []


def test_three_task_cycle_names_every_task_on_it():
    with pytest.raises(CircularDependencyError) as excinfo:

        class ThreeCycle(Workflow):
            @task(depends_on=["c"])
            def a(self, ctx):
                return None

            @task(depends_on=["a"])
            def b(self, ctx):
                return None

            @task(depends_on=["b"])
            def c(self, ctx):
                return None

    cycle = excinfo.value.cycle
    _assert_is_cycle(cycle, {"a": ["c"], "b": ["a"], "c": ["b"]})
    assert set(cycle) == {"a", "b", "c"}
    assert len(cycle) == 4
    assert _shows_path(excinfo.value, cycle)


def test_self_dependency_is_a_cycle_of_one_task():
    with pytest.raises(CircularDependencyError) as excinfo:

        class SelfDependent(Workflow):
            @task(depends_on=["loop"])
            def loop(self, ctx):
                return None

    assert excinfo.value.cycle == ["loop", "loop"]
    assert _shows_path(excinfo.value, ["loop", "loop"])


def test_cycle_path_leaves_out_tasks_that_only_lead_into_it():
    dependencies = {
        "entry": ["b"],
        "b": ["c"],
        "c": ["d"],
        "d": ["b"],
        "tail": ["entry"],
    }

    with pytest.raises(CircularDependencyError) as excinfo:

        class CycleWithTails(Workflow):
            @task(depends_on=["b"])
            def entry(self, ctx):
                return None

            @task(depends_on=["c"])
            def b(self, ctx):
                return None

            @task(depends_on=["d"])
            def c(self, ctx):
                return None

            @task(depends_on=["b"])
            def d(self, ctx):
                return None

            @task(depends_on=["entry"])
            def tail(self, ctx):
                return None

    cycle = excinfo.value.cycle
    _assert_is_cycle(cycle, dependencies)
    assert set(cycle) == {"b", "c", "d"}


def test_an_acyclic_workflow_with_shared_dependencies_is_accepted():
    class NoCycle(Workflow):
        @task
        def a(self, ctx):
            return None

        @task(depends_on=[a])
        def b(self, ctx):
            return None

        @task(depends_on=[a, b])
        def c(self, ctx):
            return None

    assert [t.name for t in NoCycle.tasks] == ["a", "b", "c"]


# --- UnknownTaskError --------------------------------------------------------


def test_unknown_dependency_is_rejected_at_definition_with_a_suggestion():
    with pytest.raises(UnknownTaskError) as excinfo:

        class TypoDependency(Workflow):
            @task
            def fetch(self, ctx):
                return None

            @task(depends_on=["fecth"])
            def process(self, ctx):
                return None

    message = str(excinfo.value)
    assert excinfo.value.name == "fecth"
    assert "fecth" in message
    assert "did you mean 'fetch'" in message.lower()


def test_unknown_dependency_without_a_close_name_has_no_suggestion():
    with pytest.raises(UnknownTaskError) as excinfo:

        class FarOffDependency(Workflow):
            @task
            def fetch(self, ctx):
                return None

            @task(depends_on=["zzqqxx_unrelated"])
            def process(self, ctx):
                return None

    assert excinfo.value.name == "zzqqxx_unrelated"
    assert "zzqqxx_unrelated" in str(excinfo.value)
    assert "did you mean" not in str(excinfo.value).lower()


def test_unknown_task_error_is_a_lookup_error():
    with pytest.raises(LookupError):

        class MissingDependency(Workflow):
            @task(depends_on=["typo_task"])
            def process(self, ctx):
                return None


@pytest.mark.parametrize("hook", [before, after, around, on_error])
def test_unknown_hook_target_is_rejected_at_definition_with_a_suggestion(hook):
    with pytest.raises(UnknownTaskError) as excinfo:

        class TypoHook(Workflow):
            @task
            def fetch(self, ctx):
                return None

            @hook("fecth")
            def observe(self, ctx, *rest):
                return None

    message = str(excinfo.value)
    assert excinfo.value.name == "fecth"
    assert "fecth" in message
    assert "did you mean 'fetch'" in message.lower()


# --- DuplicateTaskError ------------------------------------------------------


def test_defining_the_same_method_name_twice_is_a_duplicate_task():
    with pytest.raises(DuplicateTaskError) as excinfo:

        class SameMethodTwice(Workflow):
            @task
            def load(self, ctx):
                return None

            @task
            def load(self, ctx):  # noqa: F811 - the duplicate under test
                return None

    assert excinfo.value.name == "load"
    assert "load" in str(excinfo.value)


def test_an_explicit_task_name_colliding_with_another_task_is_a_duplicate():
    with pytest.raises(DuplicateTaskError) as excinfo:

        class ExplicitNameClash(Workflow):
            @task
            def load(self, ctx):
                return None

            @task(name="load")
            def load_again(self, ctx):
                return None

    assert excinfo.value.name == "load"


# --- InvalidOptionError ------------------------------------------------------


def _define_waiting_task(**options):
    class WaitingTask(Workflow):
        @task
        def upstream(self, ctx):
            return None

        @task(depends_on=[upstream], **options)
        def downstream(self, ctx):
            return None

    return WaitingTask


@pytest.mark.parametrize(
    "dependency_wait",
    [
        None,
        {},
        0,
        30,
        {"poll_timeout": 30},
        {"poll_timeout": 0, "poll_interval": 5, "reschedule_delay": 5},
    ],
)
def test_valid_dependency_wait_values_are_accepted(dependency_wait):
    workflow = _define_waiting_task(dependency_wait=dependency_wait)

    assert workflow.perform_now().status == "succeeded"


@pytest.mark.parametrize(
    "dependency_wait",
    [
        True,
        False,
        -1,
        "30",
        {"poll_timeout": -1},
        {"poll_interval": -5},
        {"reschedule_delay": -5},
        {"timeout": 30},
        {"poll_timeout": 30, "poll_intervall": 5},
    ],
)
def test_invalid_dependency_wait_raises_at_definition(dependency_wait):
    with pytest.raises(InvalidOptionError) as excinfo:
        _define_waiting_task(dependency_wait=dependency_wait)

    assert excinfo.value.option.split(".")[0] == "dependency_wait"
    assert "dependency_wait" in str(excinfo.value)


def test_unknown_dependency_wait_key_is_named_in_the_message():
    with pytest.raises(InvalidOptionError) as excinfo:
        _define_waiting_task(dependency_wait={"poll_intervall": 5})

    assert "poll_intervall" in str(excinfo.value)


INVALID_OPTIONS = [
    ("enqueue", "yes"),
    ("enqueue", 3),
    ("enqueue", {"concurrency": 0}),
    ("enqueue", {"concurrency": -1}),
    ("enqueue", {"concurrency": "5"}),
    ("enqueue", {"queue": 5}),
    ("enqueue", {"condition": "yes"}),
    ("enqueue", {"parallel": True}),
    ("retry", -1),
    ("retry", "3"),
    ("retry", {"strategy": "fibonacci"}),
    ("throttle", 0),
    ("throttle", "10"),
    ("throttle", {"limit": -1}),
    ("timeout", -1),
    ("timeout", "10"),
    ("each", 5),
    ("each", "items"),
    ("condition", "yes"),
    ("dependency_wait", True),
]


@pytest.mark.parametrize(("option", "value"), INVALID_OPTIONS)
def test_invalid_task_option_raises_invalid_option_error_naming_it(option, value):
    with pytest.raises(InvalidOptionError) as excinfo:
        _define_waiting_task(**{option: value})

    error = excinfo.value
    assert error.option.split(".")[0] == option
    assert option in str(error)
    assert isinstance(error, ValueError)
    assert isinstance(error, WorkflowDefinitionError)


# --- the error tree ----------------------------------------------------------

DEFINITION_ERRORS = [
    "CircularDependencyError",
    "UnknownTaskError",
    "DuplicateTaskError",
    "InvalidOptionError",
]

OTHER_ERRORS = [
    "ArgumentValidationError",
    "FrozenArgumentsError",
    "ContextError",
    "OutputError",
    "TaskTimeoutError",
    "NotCalledError",
    "AlreadyCalledError",
    "DependencyFailedError",
    "UnknownWorkflowError",
    "WorkflowNotFoundError",
    "InvariantViolation",
]

ALL_ERRORS = ["WorkflowError", "WorkflowDefinitionError", *DEFINITION_ERRORS]
ALL_ERRORS += OTHER_ERRORS


@pytest.mark.parametrize("name", ALL_ERRORS)
def test_error_is_importable_from_the_package_and_the_errors_module(name):
    from_errors = getattr(errors, name)

    assert getattr(job_workflow, name) is from_errors
    assert isinstance(from_errors, type)
    assert issubclass(from_errors, Exception)


@pytest.mark.parametrize("name", ALL_ERRORS)
def test_every_error_subclasses_workflow_error(name):
    assert issubclass(getattr(errors, name), WorkflowError)


@pytest.mark.parametrize("name", DEFINITION_ERRORS)
def test_definition_errors_subclass_workflow_definition_error(name):
    assert issubclass(getattr(errors, name), WorkflowDefinitionError)


@pytest.mark.parametrize("name", OTHER_ERRORS)
def test_runtime_errors_are_not_definition_errors(name):
    assert not issubclass(getattr(errors, name), WorkflowDefinitionError)


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("ArgumentValidationError", TypeError),
        ("InvalidOptionError", ValueError),
        ("FrozenArgumentsError", AttributeError),
        ("UnknownTaskError", LookupError),
        ("ContextError", RuntimeError),
        ("TaskTimeoutError", TimeoutError),
    ],
)
def test_errors_mix_in_the_builtin_callers_expect(name, builtin):
    assert issubclass(getattr(errors, name), builtin)


def test_definition_errors_can_be_caught_as_workflow_error():
    with pytest.raises(WorkflowError):

        class CaughtAtRoot(Workflow):
            @task(depends_on=["missing"])
            def process(self, ctx):
                return None
