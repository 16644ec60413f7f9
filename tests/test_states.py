import pytest

from scheduler.engine.states import (
    ALLOWED,
    InvalidTransition,
    OrderStage,
    OrderStatus,
    TaskState,
    active_stage,
    check_transition,
    derive_order_stage,
    derive_order_status,
    members,
)

S = TaskState


def test_every_state_has_a_row_in_the_transition_table():
    assert set(ALLOWED) == set(TaskState)


def test_succeeded_and_skipped_only_go_back_in_line_by_an_operators_rerun():
    back_in_line = frozenset({S.PENDING, S.READY, S.WAITING})
    assert ALLOWED[S.SUCCEEDED] == back_in_line == ALLOWED[S.SKIPPED]
    assert S.SKIPPED in ALLOWED[S.PENDING] and S.PENDING in ALLOWED[S.READY]
    assert not any(S.SKIPPED in ALLOWED[s] for s in TaskState if s is not S.PENDING)


@pytest.mark.parametrize("start,finish", [(s, f) for s in TaskState for f in ALLOWED[s]])
def test_allowed_moves_pass(start, finish):
    check_transition("o:step", start, finish, [])


@pytest.mark.parametrize(
    "start,finish",
    [(s, f) for s in TaskState for f in TaskState if f not in ALLOWED[s]],
)
def test_any_other_move_raises(start, finish):
    with pytest.raises(InvalidTransition):
        check_transition("o:step", start, finish, [])


def test_invalid_transition_names_the_task_and_its_history():
    with pytest.raises(InvalidTransition) as info:
        check_transition("o-1:payment", S.SUCCEEDED, S.RUNNING, [S.PENDING, S.READY])
    text = str(info.value)
    assert "o-1:payment" in text and "succeeded -> running" in text and "pending -> ready" in text


@pytest.mark.parametrize(
    "states,expected",
    [
        ([S.PENDING, S.PENDING], OrderStatus.PENDING),
        ([S.READY, S.PENDING], OrderStatus.PENDING),
        ([S.PENDING, S.PENDING, S.READY], OrderStatus.PENDING),
        ([S.ASSIGNED, S.PENDING], OrderStatus.IN_PROGRESS),
        ([S.SUCCEEDED, S.PENDING], OrderStatus.IN_PROGRESS),
        ([S.RETRY_WAIT, S.PENDING], OrderStatus.IN_PROGRESS),
        ([S.SUCCEEDED, S.SUCCEEDED], OrderStatus.COMPLETED),
        ([S.SUCCEEDED, S.FAILED, S.CANCELLED], OrderStatus.FAILED),
        ([S.SUCCEEDED, S.CANCELLED], OrderStatus.CANCELLED),
    ],
)
def test_order_status_is_derived_from_its_tasks(states, expected):
    assert derive_order_status(states) is expected


def test_an_invalid_move_of_a_task_with_no_history_says_so():
    with pytest.raises(InvalidTransition, match=r"\(history: \(none\)\)$"):
        check_transition("o-1:payment", S.PENDING, S.SUCCEEDED, [])


def test_members_are_the_enums_own_objects_as_plain_attributes():
    plain = members(TaskState)
    assert plain.__name__ == "TaskStateMembers"
    assert {name: getattr(plain, name) for name in TaskState.__members__} == dict(
        TaskState.__members__)
    assert all(getattr(plain, s.name) is s for s in TaskState)
    assert members(OrderStage).WAITING is OrderStage.WAITING


def test_a_stage_is_queued_unless_something_runs_retries_or_only_waits():
    assert active_stage(0, 0) is OrderStage.QUEUED
    assert active_stage(0, 0, 1) is OrderStage.WAITING
    assert active_stage(0, 0, 1, 1) is OrderStage.QUEUED
    # One step ready and one on a worker beside one waiting for a signal: queued.
    assert derive_order_stage([S.WAITING, S.READY, S.ASSIGNED]) is OrderStage.QUEUED
    assert derive_order_stage([S.WAITING, S.PENDING]) is OrderStage.WAITING
