"""Remote workers: the wire protocol, the `orderflow worker` process (session.py decides,
client.py does the I/O), and the supervisor that starts local worker processes for a
server. Never imports Flask."""

from .. import library_logging  # noqa: F401  (the orderflow logger is quiet by default)
