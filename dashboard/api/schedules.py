"""Recurring schedules: each with its cron, workflow, next time and last run (read only).

A schedule is declared in the app (`app.schedule(...)`, scheduler/steps/app.py) and fired
by the leader (scheduler/runtime/schedules.py); the API shows what the journal keeps of it.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from scheduler import Cluster

bp = Blueprint("schedules", __name__, url_prefix="/api/schedules")


def _cluster() -> Cluster:
    return current_app.extensions["orderflow"].cluster


@bp.get("")
def index():
    return {"schedules": _cluster().schedules()}


@bp.get("/<name>")
def one(name: str):
    return _cluster().schedule(name)
