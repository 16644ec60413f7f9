"""Errors the scheduler raises for requests it refuses; the web layer maps them to 4xx."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of the errors the facade turns into 4xx answers."""


class UnknownOrder(SchedulerError, KeyError):
    def __str__(self) -> str:
        return f"unknown order {self.args[0]!r}"


class UnknownWorker(SchedulerError, KeyError):
    def __str__(self) -> str:
        return f"unknown worker {self.args[0]!r}"


class UnknownStep(SchedulerError, KeyError):
    """A step no workflow of the cluster has (HTTP 404)."""

    def __str__(self) -> str:
        return f"unknown step {self.args[0]!r}"


class UnknownSchedule(SchedulerError, KeyError):
    """A recurring schedule the app does not declare (HTTP 404)."""

    def __str__(self) -> str:
        return f"unknown schedule {self.args[0]!r}"


class UnknownWorkflow(SchedulerError, ValueError):
    pass


class UnknownDefinition(SchedulerError, LookupError):
    """A workflow definition (a key, or a name of the running app's) the cluster does not
    know, named where an operator moves orders (HTTP 404)."""


class UnknownWait(SchedulerError, ValueError):
    """A signal for a name the order never waits for (HTTP 422, naming its waits)."""


class Conflict(SchedulerError):
    """The object exists but its state does not allow the request (HTTP 409)."""


class UnstorableText(SchedulerError, ValueError):
    """A value no journal can hold (a NUL, a lone surrogate; engine/text.py) was given to
    look something up: nothing stored can match it (HTTP 400)."""


class Overloaded(SchedulerError):
    """Too much unfinished work to accept more now (HTTP 503 with Retry-After)."""

    # Seconds a client should wait before trying again.
    retry_after = 5


__all__ = [
    "Conflict",
    "Overloaded",
    "SchedulerError",
    "UnknownOrder",
    "UnknownStep",
    "UnknownWait",
    "UnknownWorker",
    "UnknownWorkflow",
    "UnstorableText",
]
