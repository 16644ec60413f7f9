"""The ready queue on its own: which ready task a worker with a free slot takes next (started
orders first, then priority; its own home first, else stolen from the longest home; the
oldest order and its earlier step first), per step, and what leaves with a home."""

from __future__ import annotations

from scheduler.engine.dispatch import ReadyQueue, ReadyQueues


def any_step(step: str) -> bool:
    return True


def push(queue: ReadyQueue, task: str, home: str, number: int, step: int = 0,
         started: bool = False, priority: int = 0) -> int:
    return queue.push(task, home, started, priority, number, step)


def drain(queue: ReadyQueue, worker: str) -> list[str]:
    taken = []
    while (popped := queue.pop_for(worker)) is not None:
        taken.append(popped[0])
    return taken


# --------------------------------------------------------------------------- one step


def test_every_push_gets_a_new_and_larger_ticket():
    queue = ReadyQueue()
    tickets = [push(queue, f"o{i}:payment", "w1", i) for i in range(4)]
    assert tickets == sorted(tickets) and len(set(tickets)) == 4
    assert queue.pop_for("w1") == ("o0:payment", tickets[0], "w1")


def test_a_queue_counts_its_tasks_overall_and_by_home():
    queue = ReadyQueue()
    assert len(queue) == 0 and not queue
    push(queue, "a1", "a", 1)
    push(queue, "a2", "a", 2)
    push(queue, "b1", "b", 3, started=True)
    assert len(queue) == 3
    assert (queue.home_load("a"), queue.home_load("b"), queue.home_load("c")) == (2, 1, 0)
    assert queue.homes() == {"a", "b"}
    queue.pop_for("a")
    assert (len(queue), queue.home_load("a"), queue.home_load("b")) == (2, 2, 0)
    assert queue.homes() == {"a"}


def test_a_worker_takes_from_its_own_home_first_oldest_order_then_earlier_step():
    queue = ReadyQueue()
    push(queue, "o2:payment", "w1", 2)
    push(queue, "o9:payment", "w2", 9)
    push(queue, "o1:packing", "w1", 1, step=1)
    push(queue, "o1:payment", "w1", 1, step=0)
    assert drain(queue, "w1")[:3] == ["o1:payment", "o1:packing", "o2:payment"]


def test_a_worker_with_nothing_at_home_steals_from_the_longest_home():
    queue = ReadyQueue()
    push(queue, "short", "z-short", 1)
    for i in range(3):
        push(queue, f"long{i}", "a-long", 10 + i)
    task, _, home = queue.pop_for("w2")
    assert (task, home) == ("long0", "a-long")  # the length decides, not the name
    assert queue.home_load("a-long") == 2


def test_a_worker_with_work_at_home_does_not_steal_even_from_a_longer_home():
    queue = ReadyQueue()
    push(queue, "mine", "w1", 5)
    for i in range(3):
        push(queue, f"theirs{i}", "w2", i)
    assert queue.pop_for("w1")[0] == "mine"


def test_stealing_between_homes_of_one_length_takes_from_the_last_named():
    queue = ReadyQueue()
    push(queue, "from-b", "b", 1)
    push(queue, "from-a", "a", 2)
    assert queue.pop_for("z")[2] == "b"
    queue = ReadyQueue()
    push(queue, "from-a", "a", 1)
    push(queue, "from-b", "b", 2)
    assert queue.pop_for("z")[2] == "b"


def test_a_started_order_goes_before_a_higher_priority_new_one_and_priority_before_age():
    queue = ReadyQueue()
    push(queue, "new-old", "w1", 1)
    push(queue, "new-express", "w1", 5, priority=10)
    push(queue, "started", "w1", 9, step=1, started=True)
    push(queue, "started-express", "w1", 8, step=1, started=True, priority=1)
    assert drain(queue, "w1") == ["started-express", "started", "new-express", "new-old"]


def test_own_home_counts_only_within_the_best_class_waiting():
    queue = ReadyQueue()
    push(queue, "mine-new", "w1", 1)
    push(queue, "theirs-started", "w2", 2, started=True)
    assert queue.pop_own("w1") is None  # the best class has nothing at w1's home
    assert queue.pop_for("w1")[0] == "theirs-started"
    assert queue.pop_own("w1")[0] == "mine-new"
    assert queue.pop_own("w1") is None and queue.pop_for("w1") is None


def test_taking_a_home_removes_its_tasks_in_queue_order_and_leaves_the_others():
    queue = ReadyQueue()
    push(queue, "gone-2", "w1", 2)
    push(queue, "stays", "w2", 1)
    push(queue, "gone-1", "w1", 1)
    push(queue, "gone-started", "w1", 3, started=True)
    assert queue.take_home("w1") == ["gone-started", "gone-1", "gone-2"]
    assert len(queue) == 1 and queue.home_load("w1") == 0 and queue.home_load("w2") == 1
    assert queue.homes() == {"w2"}
    assert queue.take_home("w1") == []
    assert queue.pop_for("w1")[0] == "stays"
    assert queue.best_rank() is None


def test_taking_the_only_home_of_a_class_leaves_the_next_class_first():
    queue = ReadyQueue()
    push(queue, "started", "w1", 1, started=True)
    push(queue, "new", "w2", 2)
    queue.take_home("w1")
    assert queue.best_rank() == (1, 0)
    assert queue.pop_own("w2")[0] == "new"


# --------------------------------------------------------------------------- per step


def test_queues_per_step_count_their_tasks_and_list_only_steps_with_any():
    queues = ReadyQueues()
    queues.push("o1:payment", "payment", "w1", False, 0, 1, 0)
    queues.push("o2:payment", "payment", "w2", False, 0, 2, 0)
    queues.push("o3:packing", "packing", "w1", True, 0, 3, 1)
    assert len(queues) == 3
    assert sorted(queues.lanes()) == ["packing", "payment"]
    assert (queues.home_load("w1"), queues.home_load("w2")) == (2, 1)
    assert queues.pop_for("w2", any_step)[0] == "o3:packing"  # started first, even stolen
    assert queues.lanes() == ["payment"] and len(queues) == 2
    assert (queues.home_load("w1"), queues.home_load("w2")) == (1, 1)  # counted by home
    assert queues.take_home("w1") == ["o1:payment"]
    assert len(queues) == 1 and queues.home_load("w1") == 0
    assert queues.home_load("w2") == 1 and queues.pop_own("w2", any_step)[0] == "o2:payment"
    assert queues.home_load("w2") == 0 and not queues


def test_a_worker_only_sees_the_steps_it_can_run():
    queues = ReadyQueues()
    queues.push("o1:payment", "payment", "w1", True, 0, 1, 0)
    queues.push("o2:packing", "packing", "w1", False, 0, 2, 1)
    packer = "packing".__eq__
    assert queues.pop_own("w1", packer)[0] == "o2:packing"
    assert queues.pop_for("w1", packer) is None
    assert queues.pop_for("w2", "shipping".__eq__) is None
    assert len(queues) == 1


def test_across_steps_a_worker_takes_its_own_oldest_entry_of_the_best_class():
    queues = ReadyQueues()
    queues.push("o5:payment", "payment", "w1", False, 0, 5, 0)
    queues.push("o2:packing", "packing", "w1", False, 0, 2, 1)
    queues.push("o1:shipping", "shipping", "w2", False, 0, 1, 2)
    assert queues.pop_for("w1", any_step)[0] == "o2:packing"
    assert queues.pop_for("w1", any_step)[0] == "o5:payment"
    assert queues.pop_own("w1", any_step) is None
    assert queues.pop_for("w1", any_step)[::2] == ("o1:shipping", "w2")


def test_across_steps_a_thief_takes_from_the_longest_home_then_the_oldest_entry():
    queues = ReadyQueues()
    queues.push("o1:payment", "payment", "w1", False, 0, 1, 0)
    queues.push("o3:packing", "packing", "w2", False, 0, 3, 1)
    queues.push("o4:packing", "packing", "w2", False, 0, 4, 1)
    assert queues.pop_for("w9", any_step)[:3:2] == ("o3:packing", "w2")
    # Now both homes hold one: the oldest entry goes first.
    assert queues.pop_for("w9", any_step)[0] == "o1:payment"
    assert queues.pop_for("w9", any_step)[0] == "o4:packing"
    assert queues.pop_for("w9", any_step) is None and len(queues) == 0


def test_across_steps_the_best_class_wins_over_a_longer_home():
    queues = ReadyQueues()
    for i in range(3):
        queues.push(f"o{i}:payment", "payment", "w1", False, 0, i, 0)
    queues.push("o9:packing", "packing", "w2", False, 5, 9, 1)
    assert queues.pop_own("w1", any_step) is None  # the best class is w2's
    assert queues.pop_for("w1", any_step)[0] == "o9:packing"


def test_a_lane_nothing_was_queued_in_has_an_empty_queue():
    queues = ReadyQueues()
    assert queues.size(("payment", "ecommerce")) == 0 and queues.lanes() == []
