"""`orderflow serve` (gunicorn, the production server) as a subprocess for benchmarks."""

from scheduler.chaos.serve_process import ServeProcess as Server

__all__ = ["Server"]
