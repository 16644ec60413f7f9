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


class UnknownWorkflow(SchedulerError, ValueError):
    pass


class Conflict(SchedulerError):
    """The object exists but its state does not allow the request (HTTP 409)."""


__all__ = ["Conflict", "SchedulerError", "UnknownOrder", "UnknownWorker", "UnknownWorkflow"]
