"""A stand-in for a shop's payment gateway, warehouse, carrier and review service: a small HTTP
service that is slow or failing at rates you choose, and that keeps everything it did (a
reservation, a charge, a refund, a review request...) by its Idempotency-Key.

It behaves like the real ones where it matters for double charges (Stripe, Adyen): a request
with a key it has seen gets the first answer back instead of a second charge; a request whose
key is still being processed gets 409 (try again); a request without a key is refused.

    python -m examples.shop.gateway [--port 8700] [--fail 0.1] [--slow 0.1] [--slow-ms 3000]
                                    [--out-of-stock SOLD-OUT-1,...]

    POST /reservations {"order_id", "items"}           -> 201 {"id", ...} (200 when replayed)
    POST /releases     {"order_id", "reservation_id"}  -> 201 {"id", ...}
    POST /charges      {"order_id", "amount"}          -> 201 {"id", ...}
    POST /refunds      {"order_id", "charge_id", "amount"} -> 201 {"id", ...}
    POST /parcels      {"order_id", "items"}           -> 201 {"id", ...}; 422 when an item's
                                                          SKU is out of stock (every time)
    POST /shipments    {"order_id", "parcel_id"}       -> 201 {"id", ...}
    POST /reviews      {"order_id"}                    -> 201 {"id", ...}
    GET  /ledger       what it did, by kind and key: {"charges": {key: record}, ...,
                       "counts": {kind: how many done}, "replays": {kind: repeats answered}}
    GET  /healthz

A release or a refund names what it undoes; one for a reservation or a charge the gateway
never made is refused 422, as a real gateway refuses to refund a charge it does not know.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {"/reservations": "reservations", "/releases": "releases", "/charges": "charges",
         "/refunds": "refunds", "/parcels": "parcels", "/shipments": "shipments",
         "/reviews": "reviews"}
# An undo names the record it undoes by this field, found among this kind's records.
UNDOES = {"releases": ("reservation_id", "reservations"), "refunds": ("charge_id", "charges")}


class Ledger:
    """What the gateway did, by kind and Idempotency-Key; thread-safe."""

    def __init__(self, fail: float, slow: float, slow_ms: float, seed: int | None,
                 out_of_stock: frozenset[str] = frozenset()):
        self.fail, self.slow, self.slow_ms = fail, slow, slow_ms
        self.out_of_stock = out_of_stock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS.values()}
        self._busy: set[tuple[str, str]] = set()
        self.requests = 0

    def draw(self) -> tuple[bool, bool]:
        with self._lock:
            self.requests += 1
            return self._rng.random() < self.fail, self._rng.random() < self.slow

    def begin(self, kind: str, key: str) -> tuple[int, dict] | None:
        """A replayed key's first answer, 409 while it is in progress, or None: go ahead."""
        with self._lock:
            done = self.records[kind].get(key)
            if done is not None:
                done["replays"] += 1
                return HTTPStatus.OK, done
            if (kind, key) in self._busy:
                return HTTPStatus.CONFLICT, {"error": "a request with this key is in progress"}
            self._busy.add((kind, key))
            return None

    def finish(self, kind: str, key: str, record: dict | None) -> None:
        with self._lock:
            self._busy.discard((kind, key))
            if record is not None:
                self.records[kind][key] = record

    def refusal(self, kind: str, body: dict) -> str | None:
        """Why a request can never succeed (an item out of stock, an undo of nothing)."""
        if kind == "parcels":
            missing = sorted({str(item.get("sku")) for item in body.get("items") or []
                              if isinstance(item, dict) and item.get("sku") in self.out_of_stock})
            if missing:
                return f"out of stock: {', '.join(missing)}"
        if kind in UNDOES:
            named_by, undone = UNDOES[kind]
            with self._lock:
                known = any(r["id"] == body.get(named_by)
                            for r in self.records[undone].values())
            if not known:
                return f"{named_by} {body.get(named_by)!r} names no record of {undone}"
        return None

    def view(self) -> dict:
        with self._lock:
            return {"requests": self.requests,
                    **{kind: dict(records) for kind, records in self.records.items()},
                    "counts": {kind: len(records) for kind, records in self.records.items()},
                    "replays": {kind: sum(r["replays"] for r in records.values())
                                for kind, records in self.records.items()}}


def make_handler(ledger: Ledger) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the shop's own logs tell the story

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/healthz":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            elif self.path == "/ledger":
                self._answer(HTTPStatus.OK, ledger.view())
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "no such route"})

        def do_POST(self) -> None:  # noqa: N802
            kind = KINDS.get(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
                return
            if not isinstance(body, dict):
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "body is not a JSON object"})
                return
            key = self.headers.get("Idempotency-Key")
            if kind is None:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "no such route"})
                return
            if not key:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "Idempotency-Key is required"})
                return
            earlier = ledger.begin(kind, key)
            if earlier is not None:
                self._answer(*earlier)
                return
            record = None
            try:
                refused = ledger.refusal(kind, body)
                if refused is not None:
                    self._answer(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": refused})
                    return
                fails, slow = ledger.draw()
                if slow:
                    time.sleep(ledger.slow_ms / 1000)  # a slow upstream, not a test's sync
                if fails:
                    self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "try again later"})
                    return
                record = {"id": f"{kind[:2]}_{uuid.uuid4().hex[:12]}", "key": key,
                          "order_id": body.get("order_id"), "at": time.time(), "replays": 0,
                          "request": body}
                self._answer(HTTPStatus.CREATED, record)
            finally:
                ledger.finish(kind, key, record)

    return Handler


def serve(port: int, ledger: Ledger) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(ledger))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    parser.add_argument("--fail", type=float, default=0.1, help="share of requests answered 503")
    parser.add_argument("--slow", type=float, default=0.05, help="share of slow requests")
    parser.add_argument("--slow-ms", type=float, default=3000, help="how slow a slow one is")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out-of-stock", default="SOLD-OUT-1",
                        help="comma-separated SKUs that packing never finds on the shelf")
    args = parser.parse_args(argv)
    out_of_stock = frozenset(s for s in args.out_of_stock.split(",") if s)
    ledger = Ledger(args.fail, args.slow, args.slow_ms, args.seed, out_of_stock)
    try:
        server = serve(args.port, ledger)
    except OSError as exc:
        print(f"gateway: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}): pick another "
              "port with --port (make example: ARGS='--gateway-port N')", file=sys.stderr)
        return 2
    print(f"gateway listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
