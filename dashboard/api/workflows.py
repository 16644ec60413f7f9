"""Workflows: what a client may submit, with each workflow's DAG and its steps' policies."""

from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("workflows", __name__, url_prefix="/api/workflows")


@bp.get("")
def index():
    """Each workflow (by name) with its steps in a topological order: the steps each one waits
    for (`deps`) and its policy (retries, timeout, limits, tags), from the server's app."""
    return {"workflows": current_app.extensions["orderflow"].cluster.describe_workflows()}
