"""The dashboard page and the pinned browser libraries it loads.

The libraries are served by the app itself (vendored in static/vendor/, in a checkout and in a
wheel alike: see assets.py), so the page works offline and no CDN is ever asked. Only the files
listed in VENDOR are served under /vendor/.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, make_response, render_template, send_from_directory

from scheduler.demo.handlers import CHAOS_SETTINGS
from scheduler.engine.orders import ITEM, ORDER

from ..assets import VENDOR, VENDOR_DIR
from .bodies import DEMO_ORDERS, ORDER_SEARCH
from .schema import form_limits

bp = Blueprint("pages", __name__)

MIMETYPES = {".js": "text/javascript", ".css": "text/css"}
# Defence in depth behind textContent-only rendering: no inline script, nothing from
# elsewhere. CSSOM writes (element.style.x = ...) stay allowed; style="" attributes do not.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# The page's form inputs, each held to the rules of the field it sends (required, lengths,
# bounds, not blank), written from the field's one declaration: the page has no copy.
FORM_LIMITS = {
    "customer": form_limits(ORDER.field("customer")),
    "sku": form_limits(ITEM.field("sku")),
    "qty": form_limits(ITEM.field("qty")),
    "price": form_limits(ITEM.field("price")),
    "priority": form_limits(ORDER.field("priority")),
    "demo_count": form_limits(DEMO_ORDERS.field("count")),
    "failure_rate": form_limits(CHAOS_SETTINGS.field("failure_rate")),
    "latency_ms": form_limits(CHAOS_SETTINGS.field("latency_ms").of),
    "search": form_limits(ORDER_SEARCH.field("text")),
}


@bp.get("/")
def index() -> Response:
    """The live dashboard (templates/index.html), its forms' limits filled in."""
    response = make_response(render_template("index.html", limits=FORM_LIMITS))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/vendor/<name>")
def vendor(name: str) -> Response:
    """One of the pinned browser libraries; 404 for anything else."""
    if name not in VENDOR or not (VENDOR_DIR / name).is_file():
        abort(404)
    suffix = name[name.rfind("."):]
    return send_from_directory(VENDOR_DIR, name, mimetype=MIMETYPES[suffix], max_age=3600)
