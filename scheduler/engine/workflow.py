"""Workflows: named DAGs of steps, validated when they are defined."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class WorkflowError(ValueError):
    """A workflow definition is not a valid DAG; the message says which step is wrong."""


@dataclass(frozen=True)
class Workflow:
    """A validated DAG. `steps` is in a topological order; `deps`/`dependents` go both ways."""

    name: str
    steps: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]

    @classmethod
    def define(cls, name: str, steps: Iterable[tuple[str, Iterable[str]]]) -> Workflow:
        """Build from `(step, [dependencies])` pairs; raises WorkflowError for a bad graph."""
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
        )

    def roots(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps if not self.deps[s])


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
