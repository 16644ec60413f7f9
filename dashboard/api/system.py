"""Health, statistics, the event log, chaos settings and the API description."""

from __future__ import annotations

from flask import Blueprint, current_app

from scheduler import Cluster
from scheduler.journal.schema import StoreError

from ..door.audit import actor
from ..door.codes import ErrorCode
from ..door.parsing import json_body, read_query
from ..failover.leadership import refusal_of
from . import actions
from .bodies import EVENT_PAGE, MAX_BULK_ORDERS
from .openapi import openapi_document

bp = Blueprint("system", __name__)


def _cluster() -> Cluster:
    return current_app.extensions["orderflow"].cluster


@bp.get("/healthz")
def healthz():
    """200 while the server leads and can accept work durably; 503 on a standby (naming the
    leader) and once the journal cannot be written: a load balancer sends work to the 200."""
    services = current_app.extensions["orderflow"]
    role = services.role().as_dict()
    refused = refusal_of(services.leadership)
    if refused is not None:
        return {"status": role["role"], **role, **refused}, 503
    try:
        services.cluster.journal.check()
    except StoreError as exc:
        return {"status": "error", **role, "error": {"code": ErrorCode.JOURNAL_UNAVAILABLE,
                                                     "message": str(exc)}}, 503
    return {"status": "ok", **role}


@bp.get("/api/stats")
def stats():
    return _cluster().stats()


@bp.get("/api/events")
def events():
    """Events after `after` in seq order. If `after` < oldest_seq - 1, some are no longer in
    memory: take a fresh snapshot (GET /api/orders, /api/workers, /api/stats) instead."""
    page = read_query(EVENT_PAGE)
    after, limit = page["after"], page["limit"]
    cluster = _cluster()
    oldest, newest = cluster.event_bounds()
    return {
        "events": cluster.events(after=after, limit=limit),
        "oldest_seq": oldest,
        "last_seq": newest,
    }


@bp.get("/api/chaos")
def chaos():
    return _cluster().chaos.view()


@bp.put("/api/chaos")
def update_chaos():
    return actions.update_chaos(_cluster(), json_body(), actor())


@bp.get("/api/history")
def history():
    """The last hour of throughput, queue depth and failures, a point every few seconds."""
    return current_app.extensions["orderflow"].history.view()


@bp.get("/api/failures")
def failures():
    """Failed orders (of those in memory) grouped by the step that failed and its reason."""
    return _cluster().failures(max_ids=MAX_BULK_ORDERS)


@bp.get("/api/openapi.json")
def openapi():
    return openapi_document(current_app)
