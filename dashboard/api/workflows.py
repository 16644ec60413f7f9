"""Workflows: what a client may submit, with each workflow's DAG and its steps' policies;
and moving unfinished orders from one definition (a workflow's version) to another."""

from __future__ import annotations

from flask import Blueprint, current_app

from ..door.audit import actor
from ..door.parsing import json_body
from . import actions

bp = Blueprint("workflows", __name__, url_prefix="/api/workflows")
definitions_bp = Blueprint("definitions", __name__, url_prefix="/api/definitions")


@bp.get("")
def index():
    """Each workflow (by name) with its steps in a topological order: the steps each one waits
    for (`deps`) and its policy (retries, timeout, limits, tags), from the server's app."""
    return {"workflows": current_app.extensions["orderflow"].cluster.describe_workflows()}


@definitions_bp.post("/migrate")
def migrate():
    """Move the unfinished orders of definition `from` to `to` (or, `dry_run`, list what
    would happen to each): 200 with each order's kept, skipped, dropped and to-run steps;
    409 refused whole with the reason; 404 an unknown definition or order."""
    return actions.migrate_orders(current_app.extensions["orderflow"].cluster, json_body(),
                                  actor())
