"""Remote workers: the wire protocol, the `orderflow worker` client, and the supervisor that
starts local worker processes for a server. Never imports Flask."""
