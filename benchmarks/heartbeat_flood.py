"""A token holder's heartbeat flood: submit latency with and without it (issue 19, finding 7).

Starts `orderflow serve --token` (gunicorn, SQLite journal in a temporary folder, no demo
latency), measures POST /api/orders one at a time for --seconds (p50/p99: the baseline), then starts
`--flooders` processes (4), each registered on "/workers" as a worker with no steps, sending
heartbeat frames (with acknowledgement ids, as a real worker does) as fast as it can, and
measures the submits again, as long, while they flood. A flooder the server disconnects connects
again, resumes its worker id and goes on (the worst case). Prints one JSON line with both
measurements, the ratio of p50 and p99 (flood / baseline; the target is <= 2) and what the
flooders sent, had answered and how often they were cut.

    python benchmarks/heartbeat_flood.py [--seconds 30] [--flooders 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, emit, percentile  # noqa: E402
from raw_socketio import WORKERS, RawWorker, client_frame, event  # noqa: E402
from server import Server  # noqa: E402

TOKEN = "bench-token"
CHUNK = 500  # heartbeat frames per send


def payload(kind: str, worker_id: str) -> tuple[str, dict]:
    """What a flooder sends: heartbeats, or `begin` for a task that does not exist (any other
    frame: limited by the frame rate, not the heartbeat rate)."""
    if kind == "heartbeat":
        return "heartbeat", {"worker_id": worker_id}
    return "begin", {"worker_id": worker_id, "task_id": "no-such-task", "lease": 1}


def flood(url: str, index: int, kind: str, stop: mp.Event, ready: mp.Event,
          out: mp.Queue) -> None:
    """One flooding connection (reconnecting and resuming when cut) until `stop`."""
    sent = answered = connections = 0
    worker_id = session = None
    errors: list[str] = []
    while not stop.is_set():
        try:
            worker = RawWorker(url, TOKEN, f"flooder-{index}", steps=[], resume=worker_id,
                               session=session)
        except (OSError, RuntimeError, websocket.WebSocketException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(0.2)
            continue
        worker_id, session = worker.worker_id, worker.session
        connections += 1
        ready.set()
        lock = threading.Lock()
        counts = {"answered": 0}
        closed = threading.Event()

        def read(ws=worker.ws, lock=lock, counts=counts, closed=closed) -> None:
            try:
                while True:
                    message = ws.recv()
                    if message == "2":
                        with lock:
                            ws.send("3")
                    elif message.startswith(f"43{WORKERS},"):
                        counts["answered"] += 1
            except (OSError, websocket.WebSocketException):
                closed.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        name, data = payload(kind, worker_id)
        chunk = b"".join(client_frame(event(WORKERS, name, data, ack=100 + i))
                         for i in range(CHUNK))
        try:
            while not stop.is_set() and not closed.is_set():
                with lock:
                    worker.ws.sock.sendall(chunk)
                sent += CHUNK
        except OSError:
            pass
        worker.close()
        reader.join(5)
        answered += counts["answered"]
    out.put({"sent": sent, "answered": answered, "connections": connections,
             "errors": errors[:5]})


def submits(url: str, seconds: float) -> dict:
    """p50/p99 (ms) of POST /api/orders, one at a time with the token, for `seconds`."""
    times: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                session.post(f"{url}/api/orders", json=ORDER, headers=headers,
                             timeout=10).raise_for_status()
            except requests.RequestException:
                failed += 1
            times.append(time.perf_counter() - started)
    return {"n": len(times), "failed": failed,
            "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="seconds of submits per measurement")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--frame", choices=["heartbeat", "begin"], default="heartbeat",
                        help="what the flooders send")
    parser.add_argument("--serve-flags", default="", help="more `orderflow serve` flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Server(
            "--db", str(Path(folder) / "flood.db"), "--token", TOKEN, "--failure-rate", "0",
            "--latency-ms", "0,0", *args.serve_flags.split()) as server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{server.url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        submits(server.url, 2)  # warm up
        baseline = submits(server.url, args.seconds)
        stop, out = mp.Event(), mp.Queue()
        readies = [mp.Event() for _ in range(args.flooders)]
        flooders = [mp.Process(target=flood, args=(server.url, i, args.frame, stop, readies[i],
                                                       out))
                    for i in range(args.flooders)]
        for process in flooders:
            process.start()
        for ready in readies:
            ready.wait(30)
        started = time.monotonic()
        flooded = submits(server.url, args.seconds)
        elapsed = time.monotonic() - started
        stop.set()
        reports = [out.get(timeout=60) for _ in flooders]
        for process in flooders:
            process.join(10)
        after = submits(server.url, min(10.0, args.seconds))
    sent = sum(r["sent"] for r in reports)
    emit({
        "baseline": baseline, "flood": flooded, "after_flood": after,
        "p50_ratio": round(flooded["p50_ms"] / baseline["p50_ms"], 2),
        "p99_ratio": round(flooded["p99_ms"] / baseline["p99_ms"], 2),
        "flood_seconds": round(elapsed, 1),
        "frame": args.frame, "sent": sent, "sent_per_s": round(sent / elapsed),
        "answered": sum(r["answered"] for r in reports),
        "connections": sum(r["connections"] for r in reports),
        "flooder_errors": [e for r in reports for e in r["errors"]][:5],
        "serve_flags": args.serve_flags,
    })


if __name__ == "__main__":
    main()
