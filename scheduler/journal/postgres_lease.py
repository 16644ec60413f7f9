"""The leadership lease in PostgreSQL: the `leader` row and the statements on it.

One row (schema version 2): `epoch`, `holder`, `url`, `pid` (the backend pid of the holder's
lease session) and `expires_at`, on the database's clock, so the servers' clocks never have
to agree. Each server keeps a session of its own for the lease (`PostgresLeaseStore`); the
lease is bound to it: renewing needs the same session (`pid = pg_backend_pid()`), so a leader
whose lease session was killed (or cut) cannot renew and steps down.

Serialisation, all through the row's locks:
- every journal write transaction of a leader reads the row `FOR KEY SHARE` first and checks
  the epoch (postgres.py); renewals (`UPDATE ... expires_at`, a no-key update) never wait
  for those, nor they for renewals;
- taking the lease reads the row `FOR UPDATE` first, which waits for every write transaction
  in flight, and bumps the epoch; a write transaction that starts later waits for the taker
  and then reads the new epoch and fails. So all of a deposed leader's commits come before
  its successor's epoch, which recovers them; none come after.
A standby looks at the row without locking it and locks only to take it, once it is free:
expired, or its holder's lease session is gone from `pg_stat_activity` (its process died or
its connection was killed: PostgreSQL ends the session at once, long before the expiry).
A write transaction still open once the lease has expired is one of a leader that stopped by
its own clock already (paused, cut off) and would hold the row until PostgreSQL ends it; the
taker ends it (rolled back: nothing of it commits) rather than wait. That is safe at any
moment: what keeps a deposed leader's commits before its successor's epoch is the row lock,
not the waiting (a commit either lands before the taker's lock, or never).
"""

from __future__ import annotations

import math

import psycopg

from .lease import LeaseSettings, LeaseView
from .schema import StoreError

# How long a takeover waits for the old leader's write transactions to end. A leader paused
# inside one holds its lock until PostgreSQL ends it: idle_in_transaction_session_timeout on
# the journal's sessions when it waits between statements, but only statement_timeout (60 s)
# when it was paused in the middle of one (a COPY waiting for its rows). So once the lease has
# expired the taker ends them (_END_STALE_WRITERS) first, and again after a wait that timed out
# (one that began meanwhile), then tries again at its next look.
TAKE_LOCK_TIMEOUT = "1s"

_LOOK = (
    "SELECT epoch, holder, url, expires_at < clock_timestamp(), "
    "pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = leader.pid), "
    "GREATEST(0, EXTRACT(EPOCH FROM expires_at - clock_timestamp()))::float8 "
    "FROM leader WHERE id = 1"
)
_TAKE = (
    "UPDATE leader SET epoch = epoch + 1, holder = %s, url = %s, pid = pg_backend_pid(), "
    "expires_at = clock_timestamp() + make_interval(secs => %s), since = clock_timestamp() "
    "WHERE id = 1 RETURNING epoch"
)
_RENEW = (
    "UPDATE leader SET expires_at = clock_timestamp() + make_interval(secs => %s) "
    "WHERE id = 1 AND epoch = %s AND pid = pg_backend_pid() RETURNING epoch"
)
_RELEASE = (
    "UPDATE leader SET expires_at = clock_timestamp() - interval '1 second' "
    "WHERE id = 1 AND epoch = %s AND pid = pg_backend_pid()"
)
# The sessions holding the lease row's share lock (a leader's write transactions) while the
# lease of `epoch` has expired on the database's clock: ended, so their transactions roll
# back. Not one that waits for a lock itself (another standby trying to take the lease).
_END_STALE_WRITERS = (
    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'relation' AND l.relation = 'leader'::regclass "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.mode = 'RowShareLock' AND l.granted AND l.pid <> pg_backend_pid() "
    "AND a.wait_event_type IS DISTINCT FROM 'Lock' "
    "AND EXISTS (SELECT 1 FROM leader WHERE id = 1 AND epoch = %s "
    "AND expires_at < clock_timestamp())"
)
# What every write transaction of a leader reads first (postgres.py).
EPOCH_CHECK = "SELECT epoch, holder, url FROM leader WHERE id = 1 FOR KEY SHARE"


def lease_connection_options(settings: LeaseSettings) -> dict:
    """libpq options of the lease session (client side), so a partition that drops packets
    ends the session, an error the elector hears, within a few times the lease's ttl rather
    than when TCP gives up (15 minutes and more). The watchdog has stepped the leader down by
    its own clock by then; this frees the elector to stand by and look again.
    - `tcp_user_timeout`: data sent (a renewal) and not acknowledged by the database's
      machine for ttl: the kernel drops the connection. It bounds keepalives' probing too.
    - `keepalives*`: a renewal whose sending was acknowledged but whose answer never comes
      (the partition began after it) is probed after ttl of silence, every second.
    A frozen database on a machine that answers (SIGSTOP) keeps its connections: its
    kernel acknowledges both, and the elector waits for the thaw, already a standby."""
    ttl = math.ceil(settings.ttl)
    return {"keepalives": 1, "keepalives_idle": ttl, "keepalives_interval": 1,
            "keepalives_count": 3, "tcp_user_timeout": int(settings.ttl * 1000)}


def lease_statement_timeout(settings: LeaseSettings) -> str:
    """The lease session's statement_timeout (server side): every statement on it is
    small, and one that waited longer than the lease (on a lock, say) would answer too late
    to keep it; failing it sooner lets the elector stand by and look again."""
    return f"{int(settings.ttl * 1000)}ms"


def _view(row: tuple) -> LeaseView:
    epoch, holder, url, expired, gone, remaining = row
    return LeaseView(int(epoch), holder, url, bool(expired), bool(gone), float(remaining))


class PostgresLeaseStore:
    """The lease row through one session of this server's own (opened by `connect`, again
    after it was lost: a standby keeps looking; a leader that lost it has lost its lease)."""

    def __init__(self, connect, name: str, holder: str, url: str | None,
                 settings: LeaseSettings):
        self._connect = connect  # () -> an autocommit psycopg connection, or StoreError
        self.name, self.holder, self.url, self.settings = name, holder, url, settings
        self._conn: psycopg.Connection | None = None

    def _session(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _run(self, action):
        """`action(conn)` on the lease session; a failure of the session closes it (a new
        one is opened next time) and is a StoreError."""
        conn = self._session()
        try:
            return action(conn)
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"lease on {self.name}: {' '.join(str(exc).split())}") from None

    def look(self) -> LeaseView:
        return self._run(lambda conn: _view(conn.execute(_LOOK).fetchone()))

    def take(self, seen_epoch: int) -> int | None:
        """Bump the epoch and hold the lease, if it is still at `seen_epoch` and free once
        locked; None otherwise (another server took it, or the leader renewed, or the old
        leader's write transactions did not end within TAKE_LOCK_TIMEOUT). The write
        transactions of an expired lease are ended, not waited for."""

        def end_stale_writers(conn: psycopg.Connection) -> None:
            try:
                conn.execute(_END_STALE_WRITERS, (seen_epoch,))
            except psycopg.errors.InsufficientPrivilege:
                pass  # not allowed to end them: wait for PostgreSQL to

        def take(conn: psycopg.Connection) -> int | None:
            end_stale_writers(conn)
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = '{TAKE_LOCK_TIMEOUT}'")
                    now = _view(conn.execute(_LOOK + " FOR UPDATE").fetchone())
                    if now.epoch != seen_epoch or not now.free:
                        return None
                    row = conn.execute(_TAKE, (self.holder, self.url,
                                               self.settings.ttl)).fetchone()
                    return int(row[0])
            except psycopg.errors.LockNotAvailable:
                end_stale_writers(conn)
                return None

        return self._run(take)

    def renew(self, epoch: int) -> bool:
        return self._run(lambda conn: conn.execute(
            _RENEW, (self.settings.ttl, epoch)).fetchone() is not None)

    def release(self, epoch: int) -> None:
        """Let the lease go at once (if it is still ours), so a standby need not wait for
        it to expire."""
        if self._conn is None or self._conn.closed:
            return  # the session is gone, and with it any claim to renew or release
        self._run(lambda conn: conn.execute(_RELEASE, (epoch,)))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
