"""The built-in demo as an App, the default of `orderflow serve`, `orderflow worker` and the
Python API: payment, packing, invoice and shipping, slowed down and failed by the chaos knobs,
in the `ecommerce` chain and the `ecommerce_invoiced` fan-out."""

from __future__ import annotations

from ..engine.workflow import DEFAULT_WORKFLOWS
from ..steps.app import App
from .handlers import Chaos, demo_handlers


def demo_app(chaos: Chaos | None = None, version: str | None = None,
             **policies: dict) -> App:
    """A fresh demo app whose steps follow `chaos` (a new, calm one if not given);
    `version`: its workflows' (None: derived); `policies`: a step's policy by its name, as
    `App.step` takes it (e.g. `payment={"max_in_flight": 4}`)."""
    chaos = chaos or Chaos()
    app = App("demo", chaos=chaos, version=version)
    for name, handler in demo_handlers(chaos).items():
        app.add_step(name, handler, **policies.get(name, {}))
    for workflow in DEFAULT_WORKFLOWS.values():
        app.add_workflow(workflow)
    return app
