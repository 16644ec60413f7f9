"""orderflow's scheduling engine: a pure core and a threaded shell. Never imports Flask.

The public names below are loaded on first use (PEP 562), not when the package is imported:
`import scheduler.engine.core` runs this file first, and an eager `from .runtime.cluster import
Cluster` here would load threads, asyncio, the journal and the demo into every process that
only wants the pure engine (tests/test_layout.py holds that to a fresh interpreter).
"""

from __future__ import annotations

from importlib import import_module

# Public name -> the module that defines it (relative to this package).
_EXPORTS = {
    "App": ".steps.app",
    "AppError": ".steps.app",
    "load_app": ".steps.app",
    "StepPolicy": ".engine.config",
    "Chaos": ".demo.handlers",
    "demo_handlers": ".demo.handlers",
    "Cluster": ".runtime.cluster",
    "ClusterConfig": ".engine.config",
    "ConfigError": ".engine.config",
    "RetryPolicy": ".engine.config",
    "BreakerPolicy": ".engine.config",
    "backoff": ".engine.config",
    "SchedulerCore": ".engine.core",
    "Conflict": ".engine.errors",
    "Overloaded": ".engine.errors",
    "SchedulerError": ".engine.errors",
    "UnknownOrder": ".engine.errors",
    "UnknownWorker": ".engine.errors",
    "UnknownStep": ".engine.errors",
    "UnknownWorkflow": ".engine.errors",
    "OrderValidationError": ".engine.orders",
    "validate_order": ".engine.orders",
    "HashRing": ".engine.ring",
    "InvalidTransition": ".engine.states",
    "OrderStatus": ".engine.states",
    "TaskState": ".engine.states",
    "DEFAULT_WORKFLOWS": ".engine.workflow",
    "ECOMMERCE": ".engine.workflow",
    "Workflow": ".engine.workflow",
    "WorkflowError": ".engine.workflow",
    "TaskContext": ".steps.context",
    "TaskError": ".steps.context",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    """Import the module that defines a public name on first use, and keep the value."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute, __getattr__ is not asked
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
