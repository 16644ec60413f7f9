"""Workers: list, add, kill (a simulated crash) and drain."""

from __future__ import annotations

from flask import Blueprint, current_app

from scheduler import Cluster

from ..door.audit import actor
from ..door.parsing import json_body
from ..workers.hub import hub_of
from . import actions
from .bodies import NO_BODY

bp = Blueprint("workers", __name__, url_prefix="/api/workers")


def _cluster() -> Cluster:
    return current_app.extensions["orderflow"].cluster


@bp.get("")
def index():
    cluster = _cluster()
    # The ring rides along so the dashboard can redraw it when a worker joins or leaves.
    return {"workers": cluster.workers(), "ring": cluster.ring()}


@bp.post("")
def add():
    added = actions.add_workers(_cluster(), json_body(required=False), actor(),
                                hub_of(current_app))
    # 202 for processes: started now, they join the cluster once they have connected.
    return added, 202 if "processes" in added else 201


@bp.post("/<worker_id>/kill")
def kill(worker_id: str):
    NO_BODY.read(json_body(required=False))
    # 202: the crash happens now, but the cluster notices it later, by heartbeat.
    return actions.kill_worker(_cluster(), worker_id, actor()), 202


@bp.post("/<worker_id>/drain")
def drain(worker_id: str):
    NO_BODY.read(json_body(required=False))
    return actions.drain_worker(_cluster(), worker_id, actor()), 202
