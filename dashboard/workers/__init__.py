"""The server side of the worker protocol (scheduler/remote/protocol.py): the "/workers"
Socket.IO namespace, remote worker processes' registrations and connections (`hub`), and
what is kept per process and per worker id (`peers`)."""
