"""Workflow definitions by version: the ones orders may be submitted under now, and every
one an unfinished order is pinned to.

An order runs the definition it was submitted under to the end (`Order.workflow`), whatever
is deployed later: a restart with other code rebuilds its DAG from the definition the journal
kept, and its steps run only on workers that offer that definition (placement.py). This
registry knows them all by key ("checkout@2026.12.1"), which of them the running app has
(`current`), which the journal already holds, and how many unfinished orders each has, so
an operator knows when the last worker of an old version may go. Pure: no time, no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from .errors import Conflict
from .workflow import Workflow


class DefinitionConflict(Conflict):
    """Two definitions share a name and a version but not a shape."""


class Definitions:
    """The workflow definitions a core knows, by key."""

    def __init__(self, current: Mapping[str, Workflow]):
        self.current: dict[str, Workflow] = dict(current)  # by name: what orders may name
        self._known: dict[str, Workflow] = {}
        self._journaled: set[str] = set()
        self.unfinished: Counter[str] = Counter()  # unfinished orders by definition key
        self._after: dict[str, dict[str, int]] = {}  # key -> step -> steps_after
        for workflow in self.current.values():
            self._add(workflow)

    def learn(self, journaled: Iterable[Workflow]) -> None:
        """Definitions the journal kept (before a restart): known, and not written again.
        DefinitionConflict for one whose key the running app uses for another shape."""
        for workflow in journaled:
            self._add(workflow)
            self._journaled.add(workflow.key)

    def _add(self, workflow: Workflow) -> None:
        known = self._known.get(workflow.key)
        if known is None:
            self._known[workflow.key] = workflow
            self._after[workflow.key] = _chains_after(workflow)
        elif not known.same_shape(workflow):
            raise DefinitionConflict(
                f"workflow {workflow.label()} is defined twice with different steps "
                f"({_shape(known)} and {_shape(workflow)}); a changed workflow needs a "
                "new version (App(..., version=...)), or none, to derive one")

    def pinned(self, name: str, version: str | None) -> Workflow | None:
        """The definition an order of the journal was submitted under; one written before
        versions (no version) runs the current definition of its name. None: unknown."""
        if version:
            return self._known.get(f"{name}@{version}")
        return self._known.get(name) or self.current.get(name)

    def find(self, ref: str) -> Workflow | None:
        """A known definition by key ("checkout@v1"), else the running app's of that name
        ("checkout"). None: neither."""
        return self._known.get(ref) or self.current.get(ref)

    def steps_after(self, key: str, step: str) -> int:
        """The longest chain of steps that must follow `step` in definition `key` (0 for
        a last step, an undo or an unknown definition)."""
        return self._after.get(key, {}).get(step, 0)

    def first_use(self, workflow: Workflow) -> bool:
        """True the first time an order uses `workflow` and the journal lacks it: it is
        written in the same commit as that order."""
        if workflow.key in self._journaled:
            return False
        self._journaled.add(workflow.key)
        return True

    def current_keys(self) -> frozenset[str]:
        """The keys of the running app's definitions: what its own thread workers offer."""
        return frozenset(w.key for w in self.current.values())

    def is_current(self, key: str) -> bool:
        """Whether the running app has this definition (its own workers run it)."""
        workflow = self._known.get(key)
        return workflow is not None and self.current.get(workflow.name) is workflow

    def label(self, key: str) -> str:
        """How a person reads a known definition: "checkout version v1"."""
        return self._known[key].label()

    def stranded(self, offered: Callable[[str], bool]) -> dict[str, int]:
        """Unfinished orders, by definition key, of definitions the running app lacks and
        that no live worker offers (`offered(key)`): they wait until one joins."""
        return {key: count for key, count in sorted(self.unfinished.items())
                if count and not self.is_current(key) and not offered(key)}

    def view(self, offered: Callable[[str], bool]) -> list[dict]:
        """Each definition with unfinished orders, or current: its workflow, version,
        unfinished orders, whether the running app has it and whether a live worker offers
        it (`GET /api/stats`)."""
        keys = sorted({k for k, n in self.unfinished.items() if n}
                      | {w.key for w in self.current.values()})
        return [{"key": key, "workflow": self._known[key].name,
                 "version": self._known[key].version, "unfinished": self.unfinished[key],
                 "current": self.is_current(key), "offered": offered(key)}
                for key in keys]


def _chains_after(workflow: Workflow) -> dict[str, int]:
    chains: dict[str, int] = {}
    for step in reversed(workflow.steps):  # every dependent is counted before its step
        chains[step] = max((chains[d] + 1 for d in workflow.dependents[step]), default=0)
    return chains


def _shape(workflow: Workflow) -> str:
    return "; ".join(f"{s} after {', '.join(d)}" if d else s
                     for s, d in ((s, workflow.deps[s]) for s in workflow.steps))


def describe_stranded(stranded: Mapping[str, int], known: Definitions) -> str:
    """One line for people: "12 orders need workflow checkout version v1, 1 order needs
    ..." (`stranded`: counts by the key of a known definition)."""
    return ", ".join(
        f"{count} {'order needs' if count == 1 else 'orders need'} workflow "
        f"{known.label(key)}" for key, count in stranded.items())
