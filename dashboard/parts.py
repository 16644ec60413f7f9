"""The one shape of the moving parts the app wires around its cluster.

`create_app` builds each part (the event stream, metrics, the retention job, the remote worker
hub) and registers it with `Services` (app.py), which starts them once the cluster runs, stops
them before it does, and, with several servers on one database, has each follow the cluster
of a new leadership term (or the standby's placeholder). `Leadership`, which decides those
terms, has the same shape. A part that lacks `start` or `stop` cannot be built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler import Cluster


class Part(ABC):
    """A part of the app with threads or subscriptions of its own, over the app's cluster."""

    @abstractmethod
    def start(self) -> object:
        """Start its threads or subscriptions (some return themselves, for chaining)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what `start` started, and join its threads."""

    def follow(self, cluster: Cluster) -> None:  # noqa: B027 - optional, deliberately empty
        """A new leadership term, or standing by: work on `cluster` from now on. A part that
        holds no cluster has nothing to do."""
