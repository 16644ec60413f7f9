"""Workflows: named DAGs of steps, validated when they are defined.

A workflow definition has a version (the app's, or one derived from its shape and its steps'
policies, `steps/app.py`): an order is pinned to the definition it was submitted under
(`key`), which the journal keeps once per version (`body`), so a restart with other code
rebuilds the order's DAG as it was, never the one deployed since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property


class WorkflowError(ValueError):
    """A workflow definition is not a valid DAG; the message says which step is wrong."""


# What a wait does when its timeout passes with no signal: cancel its order (undoing what
# has an undo), fail it (likewise), or continue with no payload (its result is None).
ON_TIMEOUT = ("cancel", "fail", "continue")


@dataclass(frozen=True)
class Wait:
    """A step of a workflow with no handler: it waits for the signal of its name
    (`POST /api/orders/<id>/signals/<name>`), whose data becomes its result, for at most
    `timeout` seconds (None: for ever), then does `on_timeout`."""

    name: str
    timeout: float | None = None
    on_timeout: str = "cancel"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise WorkflowError("a wait needs a non-empty name")
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float)
            or not self.timeout > 0 or self.timeout == float("inf")
        ):
            raise WorkflowError(
                f"wait {self.name!r}: timeout must be a number of seconds > 0, got "
                f"{self.timeout!r}")
        if self.on_timeout not in ON_TIMEOUT:
            raise WorkflowError(f"wait {self.name!r}: on_timeout must be one of "
                                f"{', '.join(ON_TIMEOUT)}, got {self.on_timeout!r}")


@dataclass(frozen=True)
class Workflow:
    """A validated DAG. `steps` is in a topological order; `deps`/`dependents` go both ways."""

    name: str
    steps: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]
    # A saga's compensations: step -> the step that undoes it once it succeeded, run when
    # the order fails or is cancelled later on. An undo is not a step of the DAG.
    compensations: Mapping[str, str] = field(default_factory=dict)
    # Its waits: step -> how it waits. A wait is a step of the DAG with no handler.
    waits: Mapping[str, Wait] = field(default_factory=dict)
    # Which definition of `name` this is ("" for one defined without a version): orders
    # are pinned to it, and workers say which versions they run.
    version: str = ""

    @classmethod
    def define(cls, name: str, steps: Iterable[tuple[str, Iterable[str]]],
               compensations: Mapping[str, str] | None = None,
               waits: Iterable[Wait] = (), version: str = "") -> Workflow:
        """Build from `(step, [dependencies])` pairs, `compensations` (step -> its undo)
        and `waits` (steps that wait for a signal); raises WorkflowError for a bad graph,
        undo or wait."""
        if not isinstance(name, str) or not name:
            raise WorkflowError("a workflow needs a non-empty name")
        deps: dict[str, tuple[str, ...]] = {}
        for step, step_deps in steps:
            if not isinstance(step, str) or not step:
                raise WorkflowError(f"workflow {name!r}: step names must be non-empty strings")
            if step in deps:
                raise WorkflowError(f"workflow {name!r}: step {step!r} is defined twice")
            step_deps = tuple(step_deps)
            if len(set(step_deps)) != len(step_deps):
                raise WorkflowError(f"workflow {name!r}: step {step!r} lists a dependency twice")
            deps[step] = step_deps
        if not deps:
            raise WorkflowError(f"workflow {name!r} has no steps")
        for step, step_deps in deps.items():
            for dep in step_deps:
                if dep not in deps:
                    raise WorkflowError(
                        f"workflow {name!r}: step {step!r} depends on unknown step {dep!r}"
                    )
        order = _topological_order(name, deps)
        dependents: dict[str, list[str]] = {s: [] for s in deps}
        for step in order:
            for dep in deps[step]:
                dependents[dep].append(step)
        return cls(
            name=name,
            steps=tuple(order),
            deps=deps,
            dependents={s: tuple(d) for s, d in dependents.items()},
            compensations=_check_compensations(name, deps, compensations or {}),
            waits=_check_waits(name, deps, compensations or {}, waits),
            version=_check_version(name, version),
        )

    @cached_property  # read for every ready task: made once
    def key(self) -> str:
        """The definition's identity: "checkout@2026.12.1" (the bare name without a
        version). What an order is pinned to and what a worker offers."""
        return f"{self.name}@{self.version}" if self.version else self.name

    def label(self) -> str:
        """How a person reads the definition: "checkout version 2026.12.1"."""
        return f"{self.name} version {self.version}" if self.version else self.name

    def body(self) -> dict:
        """Its shape as the journal keeps it (JSON): steps in order with their
        dependencies, the undos, and the waits (each with its timeout and what it does
        then)."""
        return {"steps": [[s, list(self.deps[s])] for s in self.steps],
                "compensations": dict(self.compensations),
                "waits": [[w.name, w.timeout, w.on_timeout] for w in self.waits.values()]}

    @classmethod
    def from_body(cls, name: str, version: str, body: Mapping) -> Workflow:
        """A definition back from its journaled `body`."""
        return cls.define(name, [(s, d) for s, d in body["steps"]],
                          body.get("compensations") or {},
                          [Wait(*w) for w in body.get("waits") or ()], version)

    def same_shape(self, other: Workflow) -> bool:
        """Whether `other` has the same steps, dependencies, undos and waits (in any
        order)."""
        return (dict(self.deps) == dict(other.deps)
                and dict(self.compensations) == dict(other.compensations)
                and dict(self.waits) == dict(other.waits))

    def undo_of(self, undo: str) -> str | None:
        """The step that `undo` compensates (None: `undo` is no undo of this workflow)."""
        for step, named in self.compensations.items():
            if named == undo:
                return step
        return None

    def roots(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps if not self.deps[s])


def _check_compensations(
    name: str, deps: Mapping[str, tuple[str, ...]], compensations: Mapping[str, str]
) -> dict[str, str]:
    """Each undo names a step of the workflow and is not one itself; one undo per step, so
    its task (`<order>:<undo>`) is one of a kind."""
    seen: dict[str, str] = {}
    for step, undo in compensations.items():
        if step not in deps:
            raise WorkflowError(f"workflow {name!r}: compensation for unknown step {step!r}")
        if not isinstance(undo, str) or not undo or undo in deps:
            raise WorkflowError(
                f"workflow {name!r}: step {step!r} is undone by {undo!r}, which must be a "
                "step outside the workflow")
        if undo in seen:
            raise WorkflowError(
                f"workflow {name!r}: {undo!r} undoes both {seen[undo]!r} and {step!r}")
        seen[undo] = step
    return dict(compensations)


def _check_version(name: str, version: str) -> str:
    """A version is a short printable name without "@" (the key's separator)."""
    if not isinstance(version, str) or "@" in version or len(version) > 64 or (
            version and not version.isprintable()) or version != version.strip():
        raise WorkflowError(f"workflow {name!r}: version {version!r} must be a printable "
                            "name of at most 64 characters without '@' or outer spaces")
    return version
def _check_waits(name: str, deps: Mapping[str, tuple[str, ...]],
                 compensations: Mapping[str, str], waits: Iterable[Wait]) -> dict[str, Wait]:
    """Each wait is a step of the workflow, once; a wait has nothing to undo."""
    found: dict[str, Wait] = {}
    for wait in waits:
        if wait.name not in deps:
            raise WorkflowError(f"workflow {name!r}: wait {wait.name!r} is not one of its steps")
        if wait.name in found:
            raise WorkflowError(f"workflow {name!r}: wait {wait.name!r} is given twice")
        if wait.name in compensations:
            raise WorkflowError(f"workflow {name!r}: wait {wait.name!r} cannot have an undo")
        found[wait.name] = wait
    return found


def _topological_order(name: str, deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Kahn's algorithm, keeping definition order among peers; names a step on any cycle."""
    remaining = {s: len(d) for s, d in deps.items()}
    users: dict[str, list[str]] = {s: [] for s in deps}
    for step, step_deps in deps.items():
        for dep in step_deps:
            users[dep].append(step)
    frontier = [s for s, n in remaining.items() if n == 0]
    order: list[str] = []
    while frontier:
        step = frontier.pop(0)
        order.append(step)
        for user in users[step]:
            remaining[user] -= 1
            if remaining[user] == 0:
                frontier.append(user)
    if len(order) != len(deps):
        stuck = sorted(s for s in deps if s not in order)
        raise WorkflowError(f"workflow {name!r} has a cycle through steps {stuck}")
    return order


ECOMMERCE = Workflow.define(
    "ecommerce", [("payment", []), ("packing", ["payment"]), ("shipping", ["packing"])]
)
# Fan-out and fan-in: the invoice is made while the parcel is packed.
ECOMMERCE_INVOICED = Workflow.define(
    "ecommerce_invoiced",
    [
        ("payment", []),
        ("packing", ["payment"]),
        ("invoice", ["payment"]),
        ("shipping", ["packing", "invoice"]),
    ],
)

DEFAULT_WORKFLOWS = {w.name: w for w in (ECOMMERCE, ECOMMERCE_INVOICED)}
