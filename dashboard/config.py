"""Every tunable default of the web layer, in one place (Flask config keys)."""

from __future__ import annotations

MIB = 1024 * 1024
# What `orderflow serve`'s front server reads of a request head before it answers 414 or 431
# (server/front.py), as the API's description states (api/openapi.py): the request line
# without its line end (gunicorn's greatest limit, which it is given too), and the whole head.
MAX_REQUEST_LINE = 8190
MAX_HEAD = 64 * 1024


class DefaultConfig:
    """Flask settings of the orderflow app; `create_app(config)` overrides any of them."""

    # Bodies above this are refused with 413 before a view sees them.
    MAX_CONTENT_LENGTH = MIB
    # Bearer token for the API and Socket.IO; None leaves them open (loopback only).
    ORDERFLOW_TOKEN: str | None = None
    # With a token set, reads need it too (orders hold customer data); /healthz, the page
    # shell and the OpenAPI document stay open either way.
    TOKEN_FOR_READS = True
    # Socket.IO requests open at once (a WebSocket counts for its whole life, a long poll
    # while it waits): of workers (a handshake with `X-Orderflow-Role: worker`), and of
    # dashboards (any other) in all and from one client address. Beyond them a handshake is
    # refused (503, 429) before it costs a thread; `orderflow serve` adds both caps'
    # threads to its pool, so open connections never take the HTTP API's threads.
    WORKER_SOCKET_LIMIT = 256
    DASHBOARD_SOCKET_LIMIT = 64
    DASHBOARD_SOCKET_LIMIT_PER_ADDRESS = 32
    # Frames one Socket.IO connection may send a second besides heartbeats (which are
    # limited to four per heartbeat interval), in bursts of SOCKET_FRAME_BURST; a frame
    # beyond waits its turn, the connection unread meanwhile (dashboard/door/frames.py).
    SOCKET_FRAMES_PER_SECOND = 500.0
    SOCKET_FRAME_BURST = 1000
    # A connection far past its frame limits is left unread this many seconds, then cut (so
    # a client that reconnects at once cannot make cuts a loop of handshakes).
    SOCKET_CUT_PAUSE = 5.0
    # Origins allowed to open a Socket.IO connection; None means same origin only.
    CORS_ORIGINS: list[str] | str | None = None
    # Engine.IO liveness: a client silent for about interval + timeout is dropped (seconds).
    PING_INTERVAL = 5.0
    PING_TIMEOUT = 5.0
    # The stream flushes new events to clients this often (seconds).
    STREAM_INTERVAL = 0.1
    # ...and sends the `workers` message (live heartbeat ages) this often (seconds).
    WORKERS_INTERVAL = 0.5
    # A client with more packets than this waiting to be written is "behind": it gets no
    # more events, and one fresh snapshot once it has caught up.
    STREAM_BACKLOG_LIMIT = 50
    # Events per `events` message; larger batches are split so no frame gets huge.
    STREAM_CHUNK = 1000
    # More new events than this in one flush: a snapshot for everyone is cheaper.
    STREAM_MAX_EVENTS = 5000
    # How much a snapshot carries.
    SNAPSHOT_ORDERS = 200
    SNAPSHOT_EVENTS = 500
    # What a dashboard keeps and loads, sent in every snapshot's `limits` so the browser holds
    # no copies (with the cluster's finished_order_history and the API's largest page):
    # notable events in its log, and how many orders a freshly opened page reads.
    DASHBOARD_LOG_EVENTS = 2000
    DASHBOARD_INITIAL_ORDERS = 2000
    # The chart's history kept by the server (GET /api/history): a point every
    # HISTORY_INTERVAL seconds over the last HISTORY_SPAN seconds.
    HISTORY_INTERVAL = 2.0
    HISTORY_SPAN = 3600.0
    # Keyword settings for `runtime.build_cluster` when create_app builds its own cluster.
    CLUSTER_SETTINGS: dict | None = None
    # The SQLite journal's lock when `orderflow serve` holds it for its process's life
    # (scheduler/journal/lock.py); None: the journal takes its own.
    JOURNAL_LOCK = None
    # This server's own URL, for the worker processes it starts (`serve` sets it once bound);
    # None: POST /api/workers kind=process is refused with 409.
    ORDERFLOW_URL: str | None = None
    # The server's app as MODULE:ATTR (`serve --app`), run by the worker processes it starts
    # so they offer its workflow definitions; None: the built-in demo (create_app takes it
    # from CLUSTER_SETTINGS when it builds the cluster itself).
    ORDERFLOW_APP: str | None = None
    # Worker processes this server may run at once (each holds a server thread).
    WORKER_PROCESS_LIMIT = 16
    # Remote worker registrations that join a new worker id, over all connections: per
    # second on average, and at once (a server restart brings every process back together).
    # Beyond them a registration is refused with 429 and the process tries again later.
    WORKER_JOINS_PER_SECOND = 20.0
    WORKER_JOIN_BURST = 50
    # A worker process whose connection closed (it died, or the network dropped it) and
    # that has not resumed within this many seconds has its worker ids declared dead at
    # once, so their tasks move; one silent on an open connection waits out the heartbeat
    # timeout. Fencing rejects a result it sends later.
    WORKER_RECONNECT_GRACE = 0.5
    # The leadership lease's timings (scheduler/journal/lease.py) when several servers share
    # a PostgreSQL database; None: LeaseSettings' defaults (what `orderflow serve` runs).
    LEASE_SETTINGS = None
    # Worker ids one process may hold alive or draining at once: one is the norm; an earlier
    # one drains while it finishes a running task after the process registered again.
    WORKER_IDS_PER_PROCESS = 4
