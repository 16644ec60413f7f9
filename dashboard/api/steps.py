"""Steps: list them, pause and resume one, change its limits while it runs.

A pause holds the step's ready tasks (attempts on workers finish) until it is resumed, by
hand or, for a step its circuit breaker paused, by a probe that succeeded
(scheduler/engine/pauses.py). Pausing a paused step, or resuming one that is not paused, is
refused with 409 (the answer names who paused it and since when), so two operators acting
at once learn that the other did. Every command is audited and kept across restarts.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from scheduler import Cluster

from ..door.audit import actor
from ..door.parsing import json_body
from . import actions
from .bodies import NO_BODY

bp = Blueprint("steps", __name__, url_prefix="/api/steps")


def _cluster() -> Cluster:
    return current_app.extensions["orderflow"].cluster


@bp.get("")
def index():
    return {"steps": _cluster().steps()}


@bp.post("/<step>/pause")
def pause(step: str):
    return actions.pause_step(_cluster(), step, json_body(required=False), actor())


@bp.post("/<step>/resume")
def resume(step: str):
    NO_BODY.read(json_body(required=False))
    return actions.resume_step(_cluster(), step, actor())


@bp.put("/<step>/limits")
def limits(step: str):
    return actions.set_step_limits(_cluster(), step, json_body(), actor())
