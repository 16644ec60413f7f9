"""A shop's own steps and workflows, declared in its own module, the way Celery apps,
Dramatiq actors and Temporal activities are:

    from scheduler import App, TaskContext

    app = App("shop")

    @app.step(retries=5, timeout=10, max_in_flight=50, rate=100, tags={"payments"},
              compensate="refund")
    async def payment(ctx: TaskContext) -> dict: ...

    @app.step(timeout=30)
    def packing(ctx: TaskContext) -> dict: ...

    @app.step(retries=10)  # the undo of payment: gets payment's result in ctx.results
    def refund(ctx: TaskContext) -> dict: ...

    @app.step(delay="7d")  # starts a week after the steps before it finished
    def review_request(ctx: TaskContext) -> dict: ...

    # A step with no handler: waits for POST /api/orders/<id>/signals/payment_confirmed
    app.wait("payment_confirmed", timeout="30m", on_timeout="cancel")

    app.workflow("checkout", ["payment_confirmed", "payment", "packing", "shipping",
                              "review_request"])

    app.schedule("reconcile", cron="0 3 * * *", workflow="nightly", tz="Europe/Berlin")

`orderflow serve --app shop:app` schedules its workflows; `orderflow worker --app shop:app`
runs its steps. A step's policy lives in one place: retries and backoff, time limit,
cluster-wide concurrency and rate limits, and the capability tags a worker must offer to run
it. Every mistake is caught when the module is imported, with a message naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..engine.config import BreakerPolicy, ConfigError, RetryPolicy, StepPolicy, duration
from ..engine.cron import Cron, CronError
from ..engine.orders import OrderValidationError, read_order
from ..engine.schedules import Schedule
from ..engine.workflow import Wait, Workflow, WorkflowError
from .context import Handler, is_async

# The workflow an order without one runs (the cluster's default).
DEFAULT_WORKFLOW = "ecommerce"


class AppError(ValueError):
    """An app definition that cannot run; the message names the step or workflow."""


@dataclass(frozen=True)
class Step:
    name: str
    handler: Handler
    policy: StepPolicy
    doc: str = ""
    # The step that undoes this one once it succeeded (a saga's compensation), or None.
    compensate: str | None = None

    @property
    def is_async(self) -> bool:
        return is_async(self.handler)

    def describe(self, policy: StepPolicy | None = None) -> dict:
        """The step as `GET /api/workflows` shows it, under `policy` (default: its own)."""
        policy = self.policy if policy is None else policy
        retry = policy.retry
        return {
            "name": self.name,
            "doc": self.doc,
            "async": self.is_async,
            "timeout": policy.timeout,
            "retries": None if retry is None else retry.max_retries,
            "backoff": None if retry is None else [retry.backoff_base, retry.backoff_cap],
            "max_in_flight": policy.max_in_flight,
            "rate": policy.rate,
            "burst": policy.burst,
            "tags": sorted(policy.tags),
            "breaker": None if policy.breaker is None else {
                "share": policy.breaker.share, "min_attempts": policy.breaker.min_attempts,
                "window": policy.breaker.window, "probe_after": policy.breaker.probe_after},
            "compensate": self.compensate,
            "delay": policy.delay,
        }


def describe_wait(wait: Wait) -> dict:
    """A wait as `GET /api/workflows` shows it among its workflow's steps."""
    return {"name": wait.name, "wait": True, "timeout": wait.timeout,
            "on_timeout": wait.on_timeout}


@dataclass
class App:
    """Steps (handler + policy) and the workflows made of them."""

    name: str = "orderflow"
    steps: dict[str, Step] = field(default_factory=dict)
    # Steps with no handler that wait for a signal (`wait`), by name.
    waits: dict[str, Wait] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    # The demo's chaos knobs, for an app whose handlers follow them (`demo_app`): a
    # cluster running it turns these (PUT /api/chaos). None for any other app.
    chaos: Any = None
    # The version of every workflow it declares (`App("shop", version="2026.12.1")`); None:
    # each workflow's is derived from its shape and its steps' policies, so the same code
    # gets the same version on every machine and a changed workflow a new one.
    version: str | None = None
    # Recurring schedules (`schedule`): the leader submits an order of each at its times.
    schedules: dict[str, Schedule] = field(default_factory=dict)

    def step(
        self,
        name: str | None = None,
        *,
        retries: int | None = None,
        backoff: tuple[float, float] | None = None,
        timeout: float | None = None,
        max_in_flight: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
        tags: Iterable[str] = (),
        breaker: BreakerPolicy | bool | None = None,
        compensate: str | None = None,
        delay: float | str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated function (sync or `async def`) as a step; its name is the
        function's unless given. `retries`: retries after the first attempt (default: the
        cluster's); `backoff`: (base, cap) seconds of full-jitter backoff; `timeout`: seconds
        an attempt may run; `max_in_flight` and `rate` (starts/s, bursts of `burst`): limits
        across the cluster; `tags`: capabilities a worker must offer to run it; `breaker`:
        a `BreakerPolicy` (or True for its defaults) under which the step pauses itself when
        its recent attempts fail alike (engine/pauses.py); `compensate`: the step that undoes
        it when its order fails or is cancelled after it succeeded (an ordinary step, given
        this one's result in `ctx.results`); `delay`: seconds (or "30m", "7d") it waits,
        holding no slot, after the steps before it finished."""

        def declare(handler: Handler) -> Handler:
            self.add_step(
                name or getattr(handler, "__name__", ""), handler, retries=retries,
                backoff=backoff, timeout=timeout, max_in_flight=max_in_flight, rate=rate,
                burst=burst, tags=tags, breaker=breaker, compensate=compensate, delay=delay,
            )
            return handler

        return declare

    def add_step(self, name: str, handler: Handler, compensate: str | None = None,
                 **policy) -> Step:
        """`step()` without the decorator."""
        if not isinstance(name, str) or not name.strip():
            raise AppError(f"app {self.name!r}: a step needs a name")
        if name in self.steps or name in self.waits:
            raise AppError(f"app {self.name!r}: step {name!r} is declared twice")
        if not callable(handler):
            raise AppError(f"app {self.name!r}: step {name!r} has no callable handler")
        try:
            step_policy = _policy(**policy)
        except ConfigError as exc:
            raise AppError(f"app {self.name!r}: step {name!r}: {exc}") from None
        if compensate is not None and (not isinstance(compensate, str) or not compensate
                                       or compensate == name):
            raise AppError(f"app {self.name!r}: step {name!r} needs another step's name as "
                           f"its compensation, got {compensate!r}")
        step = Step(name, handler, step_policy, (getattr(handler, "__doc__", None) or "").strip(),
                    compensate)
        self.steps[name] = step
        return step

    def wait(self, name: str, *, timeout: float | str | None = None,
             on_timeout: str = "cancel") -> Wait:
        """Declare a wait: a step with no handler that waits, holding no slot, for the
        signal `name` (`POST /api/orders/<id>/signals/<name>`), whose data is its result for
        the steps after it; for at most `timeout` (seconds, or "30m"; None: for ever), then
        `on_timeout`: "cancel" or "fail" its order (undoing what has an undo), or
        "continue" with no payload. Use its name in a workflow like a step's."""
        if not isinstance(name, str) or not name.strip():
            raise AppError(f"app {self.name!r}: a wait needs a name")
        if name in self.steps or name in self.waits:
            raise AppError(f"app {self.name!r}: step {name!r} is declared twice")
        try:
            seconds = None if timeout is None else duration(timeout, "timeout")
            wait = Wait(name, seconds, on_timeout)
        except (ConfigError, WorkflowError) as exc:
            raise AppError(f"app {self.name!r}: wait {name!r}: {exc}") from None
        self.waits[name] = wait
        return wait

    def workflow(
        self,
        name: str,
        steps: Mapping[str, Iterable[str]] | Iterable[str | tuple[str, Iterable[str]]],
    ) -> Workflow:
        """Declare a workflow: a mapping of step -> the steps it depends on, or a list of
        steps (a plain name depends on the one before it; `(step, [deps])` says it). Every
        step must be declared already, and the undo of each (`compensate=`) too; a cycle
        or an unknown step is refused."""
        if name in self.workflows:
            raise AppError(f"app {self.name!r}: workflow {name!r} is declared twice")
        pairs = _pairs(steps)
        for step, deps in pairs:
            for needed in (step, *deps):
                if needed not in self.steps and needed not in self.waits:
                    known = ", ".join(sorted(self.steps)) or "none"
                    raise AppError(
                        f"app {self.name!r}: workflow {name!r} uses step {needed!r}, which "
                        f"has no handler (declared steps: {known})"
                    )
        undos = {step: self.steps[step].compensate for step, _ in pairs
                 if step in self.steps and self.steps[step].compensate is not None}
        for step, undo in undos.items():
            self._check_undo(f"workflow {name!r}: step {step!r}", undo)
        waits = [self.waits[step] for step, _ in pairs if step in self.waits]
        try:
            shape = Workflow.define(name, pairs, undos, waits)
            workflow = Workflow.define(name, pairs, undos, waits, self._version_of(shape))
        except WorkflowError as exc:
            raise AppError(f"app {self.name!r}: {exc}") from None
        self.workflows[name] = workflow
        return workflow

    def _version_of(self, shape: Workflow) -> str:
        """The app's version, or a short digest of the workflow's shape and the policies of
        its steps and undos (not their docstrings): stable across processes."""
        if self.version is not None:
            return self.version
        # (A wait has no policy: its timeout is in the shape.)
        steps = sorted({*shape.steps, *shape.compensations.values()} - set(shape.waits))
        policies = {s: {k: v for k, v in self.steps[s].describe().items() if k != "doc"}
                    for s in steps}
        text = json.dumps({"workflow": shape.body(), "policies": policies}, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()

    @property
    def definitions(self) -> frozenset[str]:
        """The keys of its workflow definitions ("checkout@1a2b3c4d"): what a worker running
        this app offers."""
        return frozenset(wf.key for wf in self.workflows.values())

    def add_workflow(self, workflow: Workflow) -> Workflow:
        """A workflow defined elsewhere (`Workflow.define`), checked against the steps."""
        for step, undo in workflow.compensations.items():
            if self.steps.get(step) is not None and self.steps[step].compensate != undo:
                raise AppError(f"app {self.name!r}: workflow {workflow.name!r} undoes step "
                               f"{step!r} by {undo!r}; declare it as @app.step(compensate=)")
        for wait in workflow.waits.values():
            if self.waits.get(wait.name) != wait:
                raise AppError(f"app {self.name!r}: workflow {workflow.name!r} waits for "
                               f"{wait.name!r}; declare it as app.wait()")
        return self.workflow(workflow.name, {s: workflow.deps[s] for s in workflow.steps})

    def schedule(
        self,
        name: str,
        cron: str,
        *,
        workflow: str | None = None,
        data: Mapping[str, Any] | None = None,
        catch_up: bool = True,
        tz: str = "UTC",
    ) -> Schedule:
        """Submit an order of `workflow` at each time `cron` names (5 fields, or 6 with
        seconds first; in the zone `tz`, an IANA name). `data` is the order (customer and
        items; by default customer "schedule <name>" and one item named after it).
        `catch_up`: a time missed while no server ran fires once at the start (True) or
        is skipped (False). Only the leader fires; each time at most once (its order's
        idempotency key is `schedule:<name>:<time>`)."""
        where = f"app {self.name!r}: schedule {name!r}"
        if not isinstance(name, str) or not name.strip() or len(name) > 100 or ":" in name:
            raise AppError(f"app {self.name!r}: a schedule needs a name of 1-100 characters "
                           f"without ':', got {name!r}")
        if name in self.schedules:
            raise AppError(f"{where} is declared twice")
        if not isinstance(catch_up, bool):
            raise AppError(f"{where}: catch_up must be True or False")
        try:
            parsed = Cron.parse(cron)
        except CronError as exc:
            raise AppError(f"{where}: {exc}") from None
        try:
            zone = timezone.utc if tz == "UTC" else ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise AppError(f"{where}: unknown time zone {tz!r} (an IANA name, e.g. "
                           "'Europe/Berlin')") from None
        if data is None:
            data = {"customer": f"schedule {name}", "items": [{"sku": name, "qty": 1,
                                                               "price": 0}]}
        try:
            order = read_order(dict(data), workflow)
        except OrderValidationError as exc:
            raise AppError(f"{where}: its data is not an order: {exc}") from None
        scheduled = Schedule(name, parsed, order.workflow, order.data, catch_up, zone, tz)
        self.schedules[name] = scheduled
        return scheduled

    @property
    def handlers(self) -> dict[str, Handler]:
        return {name: step.handler for name, step in self.steps.items()}

    @property
    def policies(self) -> dict[str, StepPolicy]:
        return {name: step.policy for name, step in self.steps.items()}

    def check(self) -> App:
        """Ready to run: at least one workflow, and every undo a declared step with no undo
        of its own (so undos never undo each other in a cycle). Returns the app."""
        if not self.workflows:
            raise AppError(f"app {self.name!r} declares no workflow")
        for step in self.steps.values():
            if step.compensate is not None:
                self._check_undo(f"step {step.name!r}", step.compensate)
        for schedule in self.schedules.values():
            if schedule.workflow is None and DEFAULT_WORKFLOW not in self.workflows:
                raise AppError(f"app {self.name!r}: schedule {schedule.name!r} names no "
                               f"workflow and the app has no {DEFAULT_WORKFLOW!r}; give "
                               "workflow=")
            if schedule.workflow is not None and schedule.workflow not in self.workflows:
                known = ", ".join(sorted(self.workflows))
                raise AppError(f"app {self.name!r}: schedule {schedule.name!r} submits "
                               f"workflow {schedule.workflow!r}, which is not declared "
                               f"(declared workflows: {known})")
        return self

    def _check_undo(self, what: str, undo: str) -> None:
        """`undo` is a declared step without an undo of its own."""
        named = self.steps.get(undo)
        if named is None:
            known = ", ".join(sorted(self.steps)) or "none"
            raise AppError(f"app {self.name!r}: {what} is undone by {undo!r}, which is not a "
                           f"declared step (declared steps: {known})")
        if named.compensate is not None:
            raise AppError(f"app {self.name!r}: {what} is undone by {undo!r}, which has an "
                           f"undo of its own ({named.compensate!r}); an undo is not undone")

    def describe(self, policies: Mapping[str, StepPolicy] | None = None) -> list[dict]:
        """Each workflow with its DAG and its steps' policies (`GET /api/workflows`);
        `policies` are the ones in force where a cluster overrides the app's."""
        policies = policies or {}
        return [
            {
                "name": wf.name,
                "version": wf.version,
                "steps": [
                    {**(describe_wait(wf.waits[s]) if s in wf.waits
                        else self.steps[s].describe(policies.get(s))), "deps": list(wf.deps[s])}
                    for s in wf.steps
                ],
                "compensations": dict(wf.compensations),
            }
            for wf in sorted(self.workflows.values(), key=lambda w: w.name)
        ]


def _policy(
    retries: int | None = None,
    backoff: tuple[float, float] | None = None,
    timeout: float | None = None,
    max_in_flight: int | None = None,
    rate: float | None = None,
    burst: int | None = None,
    tags: Iterable[str] = (),
    breaker: BreakerPolicy | bool | None = None,
    delay: float | str | None = None,
) -> StepPolicy:
    if breaker is True:
        breaker = BreakerPolicy()
    elif breaker is False:
        breaker = None
    retry = None
    if retries is not None or backoff is not None:
        defaults = RetryPolicy()
        base, cap = backoff or (defaults.backoff_base, defaults.backoff_cap)
        retry = RetryPolicy(
            max_retries=defaults.max_retries if retries is None else retries,
            backoff_base=base,
            backoff_cap=cap,
        )
    if isinstance(tags, str):
        tags = [tags]
    return StepPolicy(timeout=timeout, max_in_flight=max_in_flight, rate=rate, burst=burst,
                      retry=retry, tags=frozenset(tags), breaker=breaker,
                      delay=None if delay is None else duration(delay, "delay"))


def _pairs(steps) -> list[tuple[str, list[str]]]:
    if isinstance(steps, Mapping):
        return [(s, list(deps)) for s, deps in steps.items()]
    pairs: list[tuple[str, list[str]]] = []
    for item in steps:
        if isinstance(item, str):
            pairs.append((item, [pairs[-1][0]] if pairs else []))
        else:
            step, deps = item
            pairs.append((step, list(deps)))
    return pairs


def load_app(spec: str) -> App:
    """The App named by "module:attr" (an App, or a function returning one)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"--app expects module:attr, got {spec!r}")
    # Like gunicorn, uvicorn and celery: the shop's module is found from where the command
    # runs, not only from installed packages.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except AppError:
        raise
    except ImportError as exc:
        raise AppError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a broken module is a message, not a traceback
        raise AppError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    value = getattr(module, attr, None)
    if callable(value) and not isinstance(value, App):
        value = value()
    if not isinstance(value, App):
        raise AppError(f"{spec} is not an orderflow App (got {type(value).__name__})")
    return value.check()
