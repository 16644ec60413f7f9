"""The wire contract between the server and `orderflow worker` processes (namespace "/workers").

Shared by both ends, so it imports neither Flask nor python-socketio. JSON only. The checks
at the end read what the worker receives (`assign`, answers), so bad input from a server is
a logged line, never a crash.

Connecting: a worker says so on its handshake (`X-Orderflow-Role: worker`), so the server
counts it among its worker connections, not its dashboards'. A server with a token wants it
on the handshake, `Authorization: Bearer T` (`handshake_headers`), and refuses one without
it before the WebSocket opens: HTTP 401 with
`{"error": {"message": "unauthorized: ..."}}` (`handshake_refusal` reads it). A server that
does not lead (a standby of a database several servers share, or one just elected and still
recovering) refuses every handshake with 503 and `{"error": {...}, "role": "standby" |
"starting", "leader": URL | null}` (`handshake_standby` reads it): the worker goes on to
the leader (`--server URL1,URL2`). A CONNECT let in just before the server stood down is
refused with the same fields in its CONNECT_ERROR data. `auth={"token":
T}` is accepted too, for a server that checks only the Socket.IO CONNECT (a refusal there is
a CONNECT_ERROR `{"message": "unauthorized: ..."}`). Refusals are logged by the server.

Worker to server; each is answered through the Socket.IO acknowledgement, and a refused one
answers `{"error": {"code", "message"}, "status": <HTTP-like status>}`:
  `register`   {"session", "name", "host", "pid", "slots", "resume": id | null,
                "join": bool, "spawn_id": str | null, "steps": [name] | null,
                "tags": [tag], "definitions": [key] | null,
                "running": [[worker_id, task_id, lease], ...], "ids": [worker_id, ...]}
               -> {"worker_id": id | null, "resumed": bool, "heartbeat_interval",
                   "heartbeat_timeout", "chaos", "max_message_bytes", "protocol"}
               Sent after every (re)connect. `slots` (1 to MAX_SLOTS): handlers the process
               runs at once, the same word and meaning as the server's slots; the server
               hands it at most slots + prefetch tasks. (Older clients send `concurrency`
               instead, still accepted with the same meaning; a registration needs one.)
               `steps`: the steps it has handlers for (null or absent: any); `tags`: the
               capabilities it offers (`--tags`). The scheduler gives it only steps it has
               handlers for and whose tags it all offers (routing by capability).
               `definitions`: the workflow definitions of its app ("checkout@1a2b3c4d",
               `orderflow worker --app`; null or absent: any): it gets steps only of
               orders pinned to one of them (old and new code side by side).
               `session` is random per process and ties its connections and worker ids
               together. With `resume` naming the process's current id, still alive, the
               server rebinds it to this connection and sends again every assignment not
               yet reported; otherwise it joins the process as a new worker (unless `join`
               is false, as while draining: then worker_id is null), and drains the
               process's earlier id if that is still alive (the answer naming it was lost
               with a connection). The id in the answer is the process's current id from
               then on, whatever it held before.
               `running`: every handler the process still runs, with the id it runs
               under; `ids`: the ids it worked under lately (at most MAX_REPORTED_IDS).
               The server counts those handlers in their steps' max_in_flight (a restarted
               server, or a new leader, learns of them only so), and stops counting any
               other attempt of those ids: it has ended. A process that is not resumed and
               still runs handlers is not joined (worker_id null): it cancels them (as when
               told it is dead) and registers again once they have returned. (Both fields
               are optional, for older clients.)
               `protocol` (PROTOCOL_VERSION; absent from older servers: 1) says which frames
               the server answers: from 2, `work`, which a worker then sends instead of
               `begin` and `result`; with a server that does not say 2, a worker sends
               those one attempt at a time. A server answers both kinds, for older workers.
  `heartbeat`  {"worker_id"} -> {"alive": bool, "chaos"}; alive false: declared dead. A
               process told that one of its ids is dead (so, `left` dead) cancels every
               handler running under it and joins again only once they have returned; one
               that ignores its cancellation for cancel_grace ends the process (EXIT_STUCK),
               as does any stuck handler while the process has no registered connection.
               So none runs on past its time limit plus the server's zombie grace, after
               which a dead worker's attempt no longer counts towards its step's limit.
  `begin`      {"worker_id", "task_id", "lease"} -> {"context": dict | null}; null: stale,
               skip it. Asking again for the same lease returns the same context. The
               context is the handler's TaskContext; its "timeout" is the attempt's time
               limit in seconds (see `cancel`). A process asks to begin only as many
               assignments as it has free slots; the rest wait in its queue.
  `result`     {"worker_id", "task_id", "lease", "ok": bool, "value", "traceback"?}
               -> {"ok": true}; fenced by lease in the scheduler; a repeat of a delivered
               result is ignored. A failed one's value is its error message, and
               `traceback` (optional: absent from older clients, and when the handler
               failed on purpose with TaskError) the handler's traceback as text, which the
               server bounds to its max_traceback_chars. A value too big for
               max_message_bytes is sent as a failed attempt instead.
  `work`       {"worker_id", "results": [[task_id, lease, ok, value, traceback?], ...],
                "begin": [[task_id, lease], ...], "take": n}
               -> {"contexts": [context | null, ...], "started": [[task_id, lease,
                   context], ...]}
               (protocol 2): many `result`s and `begin`s in one frame and one
               acknowledgement, with the same meanings (fencing, repeats, the contexts in
               `begin`'s order). A process keeps one round of `work` frames out at a time
               (one per worker id it has something for, split where a frame would pass
               max_message_bytes): what its handlers finish meanwhile, and the assignments
               that get a slot, go in the next round, sent when the answers have come.
               Each list holds at most MAX_BATCH entries; a frame the server refuses (an
               unknown worker id, a malformed entry) answers the error for all of it.
               Results are applied before the begins, under one hold of the scheduler;
               a result's fifth item, optional, is `result`'s traceback.
               `take` (optional, 0 to MAX_SLOTS): slots the process keeps free for this
               answer. A server without a persistent journal starts at most that many of
               the tasks these results made ready for this worker id at once and lists
               them in `started`, instead of an `assign` and a `begin` each; the process
               runs them as if their `begin` had been answered (even when the answer
               comes after it sent the frame again). With a journal, a step starts only
               once what made it ready is durable: those come in `assign` messages.
  `drain`      {"worker_id"} -> {"ok": true}: leave the ring after the running tasks.
  `refuse`     {"worker_id", "task_id", "lease", "reason"} -> {"ok": true, "moved": bool}:
               the process will not run this assignment, because `worker_id` is not its
               current id (retired, or unknown once its registration was answered) or it is
               draining. A worker never drops an assignment silently: it runs it or refuses
               it. The server drains that worker id if it is still alive, which moves this
               task and every other one queued there at once (`moved`: it did); otherwise
               they have moved already (the id is dead, draining or gone).

Server to worker:
  `assign`     {"worker_id", "tasks": [[task_id, lease], ...]}: run them under that id, or
               refuse them (see `refuse`). One may arrive before the answer to the
               `register` that joined its id: it waits for that answer.
  `left`       {"worker_id", "status": "dead" | "removed"}: about the process's current id:
               dead: join again under a new id; removed: drained (by the process or from the
               dashboard), so the process takes no new work, registers no new id, and exits
               0 once its running work has ended. About any other id: nothing to do.
  `cancel`     {"worker_id", "task_id", "lease"}: that attempt ran past its time limit on
               the server, which failed it ("timed out after N s") and revoked its lease.
               The process sets the handler's `TaskContext.cancelled` and cancels it if it
               is `async def` (it does the same on its own clock once the context's
               "timeout" has passed), and still sends its `result` when the handler returns:
               the server rejects it, and only then frees the slot it counts as stuck. (A
               failure that beats the server's own timeout, its monitor lagging, reads
               "timed out after N s on the worker (<the handler's error>)".)
  `kill`       {"worker_id"}: the Kill button for a process this server did not start; the
               process SIGKILLs itself (a real crash: its connection closes).

A connection that closes (the process died, or the network dropped it) without the process
resuming within WORKER_RECONNECT_GRACE (0.5 s) gets its worker ids declared dead at once,
so their tasks move; a process silent on an open connection is found by the heartbeat
timeout. Fencing by lease rejects a result that comes back later.

Exit statuses of `orderflow worker`: 0 drained (or its server is gone), 1 a second signal,
2 bad arguments or a registration the server refused as invalid, EXIT_REFUSED (3) wrong
token, EXIT_STUCK (4) every slot stuck in a handler that ignored its cancellation past its
time limit (it refuses what waits, so the server moves it, and exits for its supervisor to
restart it).
"""

from __future__ import annotations

import json
from typing import Any

NAMESPACE = "/workers"
# The frames a server answers (in its `register` answer as "protocol"; absent: 1). 2 adds
# `work`: results and begins batched per connection.
PROTOCOL_VERSION = 2
# Entries one `work` frame may carry in each of its lists.
MAX_BATCH = 1024
# Worker ids the server gives remote processes: "p-<tag>-<n>", the tag drawn at each server
# start so that no id repeats across restarts (thread workers, gone with their server, are
# "w-<n>").
ID_PREFIX = "p"
# Exit status of `orderflow worker` when the server refuses it (wrong token).
EXIT_REFUSED = 3
# ...and when every slot is stuck in a handler that ignores its cancellation.
EXIT_STUCK = 4
# Slots one process may register with (async handlers wait without a thread each).
MAX_SLOTS = 1024
# Ids one registration may name as the process's (`ids`).
MAX_REPORTED_IDS = 16
MAX_TEXT = 200
# Set by the server for the worker processes it starts (scheduler/remote/supervisor.py): the
# spawn id they register with, and the server's pid, so a child exits when its server is gone.
ENV_SPAWN_ID = "ORDERFLOW_SPAWN_ID"
ENV_PARENT_PID = "ORDERFLOW_PARENT_PID"


# Says on a worker's handshake that it is one: the server counts it against its cap of
# worker connections, not the dashboards' (dashboard/door/gate.py).
ROLE_HEADER = "X-Orderflow-Role"


def handshake_headers(token: str | None) -> dict[str, str]:
    """Headers for a worker connection's handshake (a fresh dict: the client library edits
    it)."""
    headers = {ROLE_HEADER: "worker"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def handshake_refusal(error: BaseException) -> str | None:
    """The server's message if it refused the handshake as unauthorized (401), else None.

    python-socketio reports any failed WebSocket handshake as "Connection error"; the
    WebSocket library's own error, with the status and body, is further down the chain."""
    seen: BaseException | None = error
    for _ in range(10):  # a chain is short; a cycle must not loop forever
        if seen is None:
            return None
        if getattr(seen, "status_code", None) == 401:
            try:
                return str(json.loads(getattr(seen, "resp_body", b""))["error"]["message"])
            except (ValueError, TypeError, KeyError):
                return "unauthorized"
        seen = seen.__cause__ or seen.__context__
    return None
def handshake_standby(error: BaseException) -> str | None:
    """If a standby refused the handshake (503 with a role): the leader's URL it names, or
    "" when it names none; None for any other failure."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return None
        if getattr(seen, "status_code", None) == 503:
            try:
                body = json.loads(getattr(seen, "resp_body", b""))
            except (ValueError, TypeError):
                return None
            if not isinstance(body, dict) or body.get("role") not in ("standby", "starting"):
                return None
            leader = body.get("leader")
            return leader if isinstance(leader, str) else ""
        seen = seen.__cause__ or seen.__context__
    return None


def connect_refusal(data: Any) -> tuple[str | None, str | None]:
    """A refused connection's (message, standby): the server's message, and if a server
    that does not lead refused it, the leader's URL it names ("" for none), else None.

    Two shapes arrive: a refused Socket.IO CONNECT, {"message", "data": {"role", "leader"}},
    and a refused handshake's 503 body, {"error": {"message"}, "role", "leader"}."""
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    message = data.get("message", error.get("message") if isinstance(error, dict) else None)
    message = message if isinstance(message, str) else None
    details = data.get("data", data)
    if not isinstance(details, dict) or details.get("role") not in ("standby", "starting"):
        return message, None
    leader = details.get("leader")
    return message, leader if isinstance(leader, str) else ""


# Room a message needs around a result's value, whose size the worker checks.
MESSAGE_MARGIN = 4096


def error_message(reply: Any) -> str | None:
    """The message of an error answer, or None for any other answer."""
    if not isinstance(reply, dict) or "error" not in reply:
        return None
    error = reply["error"]
    message = error.get("message") if isinstance(error, dict) else error
    return f"{message} (status {reply.get('status')})"


def welcome_problem(reply: Any) -> str | None:
    """What is wrong with a `register` answer, or None if it can be used."""
    if not isinstance(reply, dict):
        return f"not an object: {str(reply)[:200]}"
    if "error" in reply:
        return error_message(reply)
    interval = reply.get("heartbeat_interval")
    if not isinstance(reply.get("worker_id"), (str, type(None))):
        return "worker_id is not a string"
    if not isinstance(reply.get("resumed"), bool):
        return "resumed is not true or false"
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (
            0 < interval < 3600):
        return "heartbeat_interval is not a positive number"
    size = reply.get("max_message_bytes", 1_000_000)
    if isinstance(size, bool) or not isinstance(size, int) or size <= MESSAGE_MARGIN:
        return "max_message_bytes is not a usable size"
    return None


def parse_assign(data: Any) -> tuple[str, list[tuple[str, int]]] | None:
    """An `assign` message as (worker_id, [(task_id, lease), ...]), or None if malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("worker_id"), str):
        return None
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return None
    pairs = []
    for item in tasks:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or isinstance(item[1], bool) or not isinstance(item[1], int)):
            return None
        pairs.append((item[0], item[1]))
    return data["worker_id"], pairs


def parse_task_ref(data: Any) -> tuple[str, str, int] | None:
    """A message naming one attempt (`cancel`) as (worker_id, task_id, lease), or None."""
    if not isinstance(data, dict):
        return None
    worker_id, task_id, lease = data.get("worker_id"), data.get("task_id"), data.get("lease")
    if (not isinstance(worker_id, str) or not isinstance(task_id, str)
            or isinstance(lease, bool) or not isinstance(lease, int)):
        return None
    return worker_id, task_id, lease
