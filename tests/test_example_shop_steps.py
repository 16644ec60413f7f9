"""The example's steps against a gateway that answers 409 while an earlier call with the same
key is still running there: the attempt waits for that call instead of failing at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import requests

from examples.shop import app as shop
from scheduler import TaskError


@dataclass
class Ctx:
    """The little of TaskContext `_post` uses; `cancelled_after` sleeps, then cancelled."""

    idempotency_key: str = "o-1:payment"
    cancelled_after: int = 99
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        return len(self.slept) < self.cancelled_after


def answers(monkeypatch, *codes: int) -> list[str]:
    """The gateway answers `codes` in turn; returns the keys it was sent."""
    sent: list[str] = []
    replies = iter(codes)

    def send(ctx, path, body):
        sent.append(ctx.idempotency_key)
        response = requests.Response()
        response.status_code = next(replies)
        response._content = b'{"id": "ch-1"}' if response.status_code == 200 else b"busy"
        return response

    monkeypatch.setattr(shop, "_send", send)
    return sent


def test_an_in_progress_key_is_waited_for_and_its_answer_returned(monkeypatch):
    sent = answers(monkeypatch, 409, 409, 200)
    ctx = Ctx()
    assert shop._post(ctx, "/charges", {}) == {"id": "ch-1"}
    assert sent == ["o-1:payment"] * 3
    assert ctx.slept == [shop.IN_PROGRESS_POLL] * 2


def test_a_cancelled_attempt_stops_waiting(monkeypatch):
    answers(monkeypatch, 409, 409, 409)
    with pytest.raises(TaskError, match="cancelled while an earlier call was in progress"):
        shop._post(Ctx(cancelled_after=1), "/charges", {})


def test_an_unwell_gateway_fails_the_attempt_at_once(monkeypatch):
    sent = answers(monkeypatch, 503)
    with pytest.raises(TaskError, match="answered 503"):
        shop._post(Ctx(), "/charges", {})
    assert len(sent) == 1


def test_a_key_in_progress_for_too_long_fails_the_attempt(monkeypatch):
    answers(monkeypatch, *[409] * 1000)
    ticks = iter(range(0, 10_000))  # a second passes at every look at the clock
    ctx = Ctx()
    with pytest.raises(TaskError, match="answered 409"):
        shop._post(ctx, "/charges", {}, clock=lambda: float(next(ticks)))
    assert len(ctx.slept) == shop.IN_PROGRESS_WAIT - 1
