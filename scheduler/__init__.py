"""orderflow's scheduling engine: a pure core and a threaded shell. Never imports Flask."""

from .cluster import Cluster
from .config import ClusterConfig, ConfigError, RetryPolicy, backoff
from .core import SchedulerCore
from .errors import Conflict, SchedulerError, UnknownOrder, UnknownWorker, UnknownWorkflow
from .handlers import Chaos, TaskContext, TaskError, demo_handlers
from .orders import OrderValidationError, validate_order
from .ring import HashRing
from .states import InvalidTransition, OrderStatus, TaskState
from .workflow import DEFAULT_WORKFLOWS, ECOMMERCE, Workflow, WorkflowError

__all__ = [
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
