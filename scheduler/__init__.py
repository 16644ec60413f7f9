"""orderflow's scheduling engine: a pure core and a threaded shell. Never imports Flask."""

import logging as _logging

from .demo.handlers import Chaos, demo_handlers
from .engine.config import ClusterConfig, ConfigError, RetryPolicy, StepPolicy, backoff
from .engine.core import SchedulerCore
from .engine.errors import (
    Conflict,
    Overloaded,
    SchedulerError,
    UnknownOrder,
    UnknownWorker,
    UnknownWorkflow,
)
from .engine.orders import OrderValidationError, validate_order
from .engine.ring import HashRing
from .engine.states import InvalidTransition, OrderStatus, TaskState
from .engine.workflow import DEFAULT_WORKFLOWS, ECOMMERCE, Workflow, WorkflowError
from .runtime.cluster import Cluster
from .steps.app import App, AppError, load_app
from .steps.context import TaskContext, TaskError

# A library prints nothing unless its application configures logging (without this, every
# retry would reach stderr through logging's last-resort handler).
_logging.getLogger("orderflow").addHandler(_logging.NullHandler())

__all__ = [
    "App",
    "AppError",
    "load_app",
    "StepPolicy",
    "Chaos",
    "Cluster",
    "ClusterConfig",
    "ConfigError",
    "Conflict",
    "DEFAULT_WORKFLOWS",
    "ECOMMERCE",
    "HashRing",
    "InvalidTransition",
    "OrderStatus",
    "OrderValidationError",
    "Overloaded",
    "RetryPolicy",
    "SchedulerCore",
    "SchedulerError",
    "TaskContext",
    "TaskError",
    "TaskState",
    "UnknownOrder",
    "UnknownWorker",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowError",
    "backoff",
    "demo_handlers",
    "validate_order",
]
