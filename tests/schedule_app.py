"""An app with a schedule that fires every second, for the tests of schedules on real
servers and on several servers sharing PostgreSQL (`--app schedule_app:app`)."""

from __future__ import annotations

from scheduler import App

app = App("ticking")
app.add_step("reconcile", lambda ctx: {"ok": True})
app.workflow("nightly", ["reconcile"])
app.schedule("tick", cron="* * * * * *", workflow="nightly")
