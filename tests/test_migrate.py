"""Moving unfinished orders to another workflow definition by hand (engine/migrate.py, issue
23 item 4): succeeded steps kept by name, steps added before steps that ran skipped (or run
when asked), removed steps dropped with a record, a move that would break a step's
dependencies refused whole."""

from __future__ import annotations

from collections import deque

import pytest
from sim import ORDER
from test_definitions import V1, V2, Driver, restarted_with

from scheduler.engine import views
from scheduler.engine.errors import UnknownDefinition, UnknownOrder
from scheduler.engine.migrate import MigrationRefused, descendants, plan_order
from scheduler.engine.states import TaskState, derive_order_status
from scheduler.engine.workflow import Workflow

S = TaskState
# The old version's payment and packing, a fraud check after the payment, no gift wrap.
V3 = Workflow.define("checkout", [("payment", []), ("fraud", ["payment"]),
                                  ("packing", ["fraud"])], version="v3")
WRAPPED = Workflow.define("checkout", [("payment", []), ("wrap", ["payment"]),
                                       ("packing", ["wrap"])], version="w")
# Another workflow altogether: the checkout2.
CHECKOUT2 = Workflow.define("checkout2", [("fraud", []), ("payment", ["fraud"]),
                                          ("packing", ["payment"]),
                                          ("shipping", ["packing"])], version="2")


def driver(*orders: str) -> Driver:
    """A core running V1 that also knows V2, V3, WRAPPED and CHECKOUT2, with `orders`."""
    d = Driver(V1)
    d.core.definitions.learn([V2, V3, WRAPPED, CHECKOUT2])
    for order_id in orders:
        d.apply(d.core.submit(order_id, dict(ORDER), d.now, workflow="checkout"))
    return d


def pay(d: Driver, worker: str = "w1") -> None:
    """Run the payment of every order on a new worker of V1, then take the worker away."""
    d.add_worker(worker, definitions={"checkout@v1"})
    while d.queues[worker]:
        task = d.queues[worker].popleft()
        if task.task_id.endswith(":payment"):
            d.apply(d.core.start_task(task.task_id, worker, task.lease, now=d.now)[0])
            d.apply(d.core.task_succeeded(task.task_id, worker, task.lease, {}, now=d.now))
    d.queues[worker].clear()
    d.apply(d.core.worker_lost(worker, d.now, reason="gone"))


def migrate(d: Driver, target: str, **kwargs):
    fx, plans = d.core.migrate_orders("checkout@v1", target, d.now, **kwargs)
    d.apply(fx)
    return fx, plans


def order(d: Driver, order_id: str = "o1"):
    return views.orders(d.core)[order_id]


def test_a_step_added_before_steps_not_yet_run_runs_first():
    d = driver("o1")  # its payment is ready: nothing ran
    fx, plans = migrate(d, "checkout@v2")
    assert plans[0].view() == {"order_id": "o1", "kept": [], "skipped": [], "dropped": [],
                               "to_run": ["fraud", "payment", "packing"]}
    o = order(d)
    assert o.workflow is V2 and list(o.tasks) == ["fraud", "payment", "packing"]
    assert o.tasks["payment"].state is S.PENDING and o.tasks["payment"].waiting_on == {"fraud"}
    assert fx.orders == {"o1": o} and fx.definitions == []  # the journal holds it
    moved = [e for e in fx.events if e["type"] == "order_migrated"]
    assert moved[0]["message"] == ("order o1 moved from checkout version v1 to checkout "
                                   "version v2: to run fraud, payment, packing")
    assert moved[0]["source"] == "checkout@v1" and moved[0]["target"] == "checkout@v2"
    d.add_worker("w2", definitions={"checkout@v2"})
    assert d.run("w2") == ["o1:fraud", "o1:payment", "o1:packing"]
    assert d.core.order_status(o).value == "completed"
    assert d.core.definitions.unfinished == {"checkout@v1": 0, "checkout@v2": 0}


def test_a_step_added_before_a_step_that_succeeded_is_skipped_not_run_after_the_fact():
    d = driver("o1")
    pay(d)
    fx, plans = migrate(d, "checkout@v2")
    assert plans[0].view() == {"order_id": "o1", "kept": ["payment"], "skipped": ["fraud"],
                               "dropped": [], "to_run": ["packing"]}
    o = order(d)
    assert o.tasks["fraud"].state is S.SKIPPED and o.tasks["packing"].state is S.READY
    skipped = [e for e in fx.events if e["type"] == "task_skipped"]
    assert [(e["order_id"], e["step"]) for e in skipped] == [("o1", "fraud")]
    assert views.stats(d.core, d.now)["tasks"]["skipped"] == 1
    d.add_worker("w2", definitions={"checkout@v2"})
    assert d.run("w2") == ["o1:packing"]
    assert d.core.order_status(o).value == "completed"


def test_run_added_runs_a_step_added_before_a_step_that_succeeded():
    d = driver("o1")
    pay(d)
    _, plans = migrate(d, "checkout@v2", run_added=True)
    assert plans[0].skipped == () and plans[0].to_run == ("fraud", "packing")
    d.add_worker("w2", definitions={"checkout@v2"})
    assert d.run("w2") == ["o1:fraud", "o1:packing"]
    assert d.core.order_status(order(d)).value == "completed"


def test_a_step_the_new_definition_lacks_is_dropped_with_a_record():
    d = driver("o1")
    pay(d)
    fx, plans = migrate(d, "checkout@w")  # packing kept, wrap added after payment
    assert plans[0].to_run == ("wrap", "packing") and plans[0].dropped == ()
    d2 = driver("o1")
    short = Workflow.define("checkout", [("payment", [])], version="short")
    d2.core.definitions.learn([short])
    fx, plans = d2.core.migrate_orders("checkout@v1", "checkout@short", 0.0)
    d2.apply(fx)
    assert plans[0].view()["dropped"] == ["packing"] and plans[0].to_run == ("payment",)
    o = order(d2)
    assert list(o.tasks) == ["payment"] and "o1:packing" not in views.tasks(d2.core)
    moved = next(e for e in fx.events if e["type"] == "order_migrated")
    assert moved["dropped"] == ["packing"] and "dropped packing" in moved["message"]


def test_a_ready_step_dropped_leaves_the_line_and_a_running_one_its_worker():
    d = driver("o1", "o2")
    d.add_worker("w1", definitions={"checkout@v1", "checkout2@2"})
    first = d.queues["w1"].popleft()  # o1's payment starts; o2's waits in line
    d.apply(d.core.start_task(first.task_id, "w1", first.lease, now=d.now)[0])
    only_packing = Workflow.define("checkout", [("packing", [])], version="p")
    d.core.definitions.learn([only_packing])
    fx, _ = d.core.migrate_orders("checkout@v1", "checkout@p", d.now)
    d.apply(fx)
    cancelled = sorted(e["order_id"] for e in fx.events if e["type"] == "task_cancelled")
    assert cancelled == ["o1", "o2"]
    assert not views.workers(d.core)["w1"].tasks - {"o1:packing", "o2:packing"}
    assert d.core.task_succeeded(first.task_id, "w1", first.lease, {}, now=d.now).events[0][
        "type"] == "result_rejected"


def test_a_move_that_runs_a_step_after_a_skipped_dependency_is_refused_whole():
    fanned = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"]),
                                          ("notify", ["fraud"]), ("packing", ["payment"])],
                             version="fan")
    d = driver("o1", "o2")
    d.core.definitions.learn([fanned])
    pay(d)  # both paid: fraud would be skipped, and notify would run after it
    before = [e["seq"] for e in d.events]
    with pytest.raises(MigrationRefused) as refused:
        d.core.migrate_orders("checkout@v1", "checkout@fan", d.now)
    assert str(refused.value) == (
        "2 of 2 orders of checkout version v1 cannot move to checkout version fan, so none "
        "moved: order o1: step notify would run after fraud, which is skipped as it comes "
        "before steps that ran (run_added runs it after the fact); order o2: step notify "
        "would run after fraud, which is skipped as it comes before steps that ran "
        "(run_added runs it after the fact)")
    assert order(d).workflow is V1 and [e["seq"] for e in d.events] == before
    d.core.validate()
    _, plans = migrate(d, "checkout@fan", run_added=True)  # asked: it runs
    assert plans[0].to_run == ("fraud", "notify", "packing")


def test_a_step_that_succeeded_before_a_dependency_that_did_not_run_is_refused():
    parallel = Workflow.define("checkout", [("payment", []), ("packing", [])], version="par")
    reordered = Workflow.define("checkout", [("packing", []), ("payment", ["packing"])],
                                version="re")
    d = Driver(parallel)
    d.core.definitions.learn([reordered])
    d.apply(d.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    d.add_worker("w1")
    task = d.queues["w1"].popleft()  # payment
    d.apply(d.core.start_task(task.task_id, "w1", task.lease, now=0.0)[0])
    d.apply(d.core.task_succeeded(task.task_id, "w1", task.lease, {}, now=0.0))
    with pytest.raises(MigrationRefused, match="step payment succeeded, but checkout version "
                       "re has it after packing, which has not run"):
        d.core.migrate_orders("checkout@par", "checkout@re", 0.0)


def test_a_step_running_on_a_worker_of_the_old_version_only_is_refused():
    d = driver("o1")
    d.add_worker("w1", definitions={"checkout@v1"})
    task = d.queues["w1"].popleft()
    d.apply(d.core.start_task(task.task_id, "w1", task.lease, now=0.0)[0])
    with pytest.raises(MigrationRefused, match="step payment is running on worker w1, which "
                       "does not run checkout version v3; wait for it to end"):
        d.core.migrate_orders("checkout@v1", "checkout@v3", 0.0)
    d.add_worker("w-any")  # a worker that runs any definition may keep its attempt
    d2 = driver("o1")
    d2.add_worker("w-any")
    task = d2.queues["w-any"].popleft()
    d2.apply(d2.core.start_task(task.task_id, "w-any", task.lease, now=0.0)[0])
    fx, plans = d2.core.migrate_orders("checkout@v1", "checkout@v3", 0.0)
    d2.apply(fx)
    assert plans[0].to_run == ("payment", "fraud", "packing")
    d2.apply(d2.core.task_succeeded(task.task_id, "w-any", task.lease, {}, now=0.0))
    assert order(d2).tasks["payment"].state is S.SUCCEEDED


def test_a_dry_run_lists_each_order_and_changes_nothing():
    d = driver("o1", "o2")
    pay(d)
    d.apply(d.core.submit("o3", dict(ORDER), d.now, workflow="checkout"))
    before = d.core.order_record(order(d), with_events=True)
    fx, plans = migrate(d, "checkout@v2", dry_run=True)
    assert [p.view() for p in plans] == [
        {"order_id": "o1", "kept": ["payment"], "skipped": ["fraud"], "dropped": [],
         "to_run": ["packing"]},
        {"order_id": "o2", "kept": ["payment"], "skipped": ["fraud"], "dropped": [],
         "to_run": ["packing"]},
        {"order_id": "o3", "kept": [], "skipped": [], "dropped": [],
         "to_run": ["fraud", "payment", "packing"]}]
    assert fx.events == [] and fx.orders == {} and fx.moves == []
    assert d.core.order_record(order(d), with_events=True) == before


def test_orders_named_must_be_unfinished_orders_of_the_source():
    d = driver("o1", "o2")
    _, plans = migrate(d, "checkout@v2", order_ids=["o2", "o2"])
    assert [p.order_id for p in plans] == ["o2"] and order(d, "o1").workflow is V1
    with pytest.raises(UnknownOrder):
        d.core.migrate_orders("checkout@v1", "checkout@v2", 0.0, order_ids=["nope"])
    with pytest.raises(MigrationRefused, match="order o2 runs checkout version v2, not "
                       "checkout version v1"):
        d.core.migrate_orders("checkout@v1", "checkout@v2", 0.0, order_ids=["o2"])
    d.apply(d.core.cancel_order("o1", 0.0))
    with pytest.raises(MigrationRefused, match="order o1 is cancelled; only unfinished"):
        d.core.migrate_orders("checkout@v1", "checkout@v2", 0.0, order_ids=["o1"])
    _, plans = migrate(d, "checkout@v2")  # all: the cancelled one is not among them
    assert plans == []


def test_definitions_are_named_by_key_or_by_a_current_name_and_must_differ():
    d = driver("o1")
    with pytest.raises(UnknownDefinition, match="to: no workflow definition 'checkout@v9'"):
        d.core.migrate_orders("checkout@v1", "checkout@v9", 0.0)
    with pytest.raises(UnknownDefinition, match="from: no workflow definition 'nope'"):
        d.core.migrate_orders("nope", "checkout@v2", 0.0)
    with pytest.raises(MigrationRefused, match="from and to are both checkout version v1"):
        d.core.migrate_orders("checkout", "checkout@v1", 0.0)
    _, plans = d.core.migrate_orders("checkout@v1", "checkout2@2", 0.0)
    assert plans[0].to_run == ("fraud", "payment", "packing", "shipping")


def test_a_migration_to_another_workflow_keeps_steps_by_name():
    d = driver("o1")
    pay(d)
    fx, plans = migrate(d, "checkout2@2")
    assert plans[0].view() == {"order_id": "o1", "kept": ["payment"], "skipped": ["fraud"],
                               "dropped": [], "to_run": ["packing", "shipping"]}
    assert d.core.order_record(order(d)).workflow == "checkout2"
    assert d.core.order_record(order(d)).version == "2"


def test_a_migrated_order_survives_a_restart_on_its_new_definition():
    d = driver("o1", "o2")
    pay(d)
    migrate(d, "checkout@v2", order_ids=["o1"])
    new = restarted_with(d, V2, learn=(V1, V2))
    o1, o2 = order(new, "o1"), order(new, "o2")
    assert o1.workflow.key == "checkout@v2" and o2.workflow.key == "checkout@v1"
    assert new.core.definitions.unfinished == {"checkout@v1": 1, "checkout@v2": 1}
    assert o1.tasks["fraud"].state is S.SKIPPED and o1.tasks["packing"].state is S.READY
    assert o1.tasks["packing"].waiting_on == set()
    new.add_worker("w2", definitions={"checkout@v2"})
    assert new.run("w2") == ["o1:packing"]
    assert new.core.order_status(o1).value == "completed"


def test_a_definition_first_used_by_a_migration_is_journaled_with_it():
    d = driver("o1")
    new = restarted_with(d, V2, learn=(V1,))  # the running app's V2: not journaled yet
    fx, _ = new.core.migrate_orders("checkout@v1", "checkout", 0.0)
    assert fx.definitions == [V2]
    fx, _ = new.core.migrate_orders("checkout@v2", "checkout@v1", 0.0)
    assert fx.definitions == []


def test_an_order_undoing_its_steps_is_not_moved():
    saga = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])],
                           {"payment": "refund"}, version="saga")
    d = Driver(saga)
    d.apply(d.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    o = order(d)
    o.undoing = ["refund"]  # as a compensation leaves it
    with pytest.raises(MigrationRefused, match="order o1 is undoing its steps"):
        plan_order(o, V2, run_added=False)


def test_skipped_counts_as_done_for_an_order_and_a_skipped_step_never_moves_again():
    assert derive_order_status([S.SUCCEEDED, S.SKIPPED]).value == "completed"
    assert derive_order_status([S.SKIPPED, S.READY]) is derive_order_status(
        [S.SUCCEEDED, S.READY])
    assert descendants(CHECKOUT2, "payment") == {"packing", "shipping"}
    assert descendants(CHECKOUT2, "shipping") == set()


def test_a_step_skipped_by_one_migration_runs_when_a_later_one_puts_it_before_steps_not_run():
    d = driver("o1")
    pay(d)
    migrate(d, "checkout@v2")  # fraud skipped: before the payment
    fx, plans = d.core.migrate_orders("checkout@v2", "checkout@v3", d.now)  # fraud after it
    d.apply(fx)
    assert plans[0].to_run == ("fraud", "packing") and plans[0].skipped == ()
    o = order(d)
    assert o.tasks["fraud"].state is S.READY and o.tasks["packing"].waiting_on == {"fraud"}
    # Back before the payment, it would have to have run: only added steps are skipped.
    with pytest.raises(MigrationRefused, match="step payment succeeded, but checkout version "
                       "v2 has it after fraud, which has not run"):
        d.core.migrate_orders("checkout@v3", "checkout@v2", d.now)


def test_a_step_skipped_before_stays_skipped_without_a_new_event():
    d = driver("o1")
    pay(d)
    migrate(d, "checkout@v2")
    again = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"]),
                                         ("packing", ["payment"]), ("ship", ["packing"])],
                            version="v2b")
    d.core.definitions.learn([again])
    fx, plans = d.core.migrate_orders("checkout@v2", "checkout@v2b", d.now)
    d.apply(fx)
    assert plans[0].skipped == ("fraud",) and plans[0].to_run == ("packing", "ship")
    assert [e["type"] for e in fx.events].count("task_skipped") == 0
    assert order(d).tasks["fraud"].state is S.SKIPPED


def test_the_migration_is_recorded_in_the_orders_timeline_with_every_step_named():
    d = driver("o1")
    pay(d)
    fx, _ = migrate(d, "checkout@v2")
    moved = next(e for e in fx.events if e["type"] == "order_migrated")
    assert {k: v for k, v in moved.items() if k not in ("seq", "ts")} == {
        "type": "order_migrated", "order_id": "o1", "step": None, "worker_id": None,
        "attempt": 0, "message": "order o1 moved from checkout version v1 to checkout "
        "version v2: kept payment; skipped fraud; to run packing",
        "workflow": "checkout", "version": "v2", "source": "checkout@v1",
        "target": "checkout@v2", "run_added": False, "steps": ["fraud", "payment", "packing"],
        "kept": ["payment"], "skipped": ["fraud"], "dropped": [], "to_run": ["packing"]}
    skipped = next(e for e in fx.events if e["type"] == "task_skipped")
    assert skipped["message"] == ("order o1 step fraud skipped: checkout version v2 adds it "
                                  "before steps that ran")
    assert [e["type"] for e in order(d).events][-2:] == ["order_migrated", "task_skipped"]
    _, again = d.core.migrate_orders("checkout@v2", "checkout@v3", d.now, run_added=True)
    assert again[0].to_run == ("fraud", "packing")
    assert next(e for e in d.core.migrate_orders("checkout@v3", "checkout@w", d.now)[0].events
                if e["type"] == "order_migrated")["message"].endswith(
        "kept payment; dropped fraud; to run wrap, packing")


def test_a_migration_that_leaves_nothing_to_run_completes_the_order():
    d = driver("o1")
    pay(d)
    short = Workflow.define("checkout", [("payment", [])], version="short")
    d.core.definitions.learn([short])
    d.now = 5.0
    fx, _ = migrate(d, "checkout@short")
    done = next(e for e in fx.events if e["type"] == "order_completed")
    assert done["duration"] == 5.0 and d.core.order_status(order(d)).value == "completed"


def test_refusals_name_what_the_step_did_and_count_the_orders_past_three():
    late = Workflow.define("checkout", [("packing", []), ("payment", ["packing"])],
                           version="late")
    d = driver("o1")
    d.core.definitions.learn([late])
    d.add_worker("w-any")
    task = d.queues["w-any"].popleft()
    d.apply(d.core.start_task(task.task_id, "w-any", task.lease, now=0.0)[0])
    for run_added in (False, True):  # asked or not: packing is no added step
        with pytest.raises(MigrationRefused, match="order o1: step payment is running, but "
                           "checkout version late has it after packing, which has not run"):
            d.core.migrate_orders("checkout@v1", "checkout@late", 0.0, run_added=run_added)


PAR = Workflow.define("checkout", [("payment", []), ("packing", [])], version="par")


def paid_par(*targets: Workflow) -> Driver:
    """An order of PAR whose payment succeeded and whose packing has not run."""
    d = Driver(PAR)
    d.core.definitions.learn(targets)
    d.apply(d.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    d.queues["w1"] = deque()
    d.apply(d.core.add_worker("w1", 0.0, definitions={"checkout@par"}, steps={"payment"}))
    d.run("w1")
    return d


def test_a_skipped_step_after_a_step_that_did_not_run_is_refused_even_as_a_second_dependency():
    first = Workflow.define("checkout", [("packing", []), ("fraud", ["packing"]),
                                         ("payment", ["fraud"])], version="first")
    second = Workflow.define("checkout", [("packing", []), ("extra", []),
                                          ("fraud", ["extra", "packing"]),
                                          ("payment", ["fraud"])], version="second")
    d = paid_par(first, second)
    for target in ("first", "second"):
        with pytest.raises(MigrationRefused, match=f"step fraud is skipped, but checkout "
                           f"version {target} has it after packing, which has not run"):
            d.core.migrate_orders("checkout@par", f"checkout@{target}", 0.0)


def test_run_added_excuses_only_added_dependencies_each_one_checked():
    added = Workflow.define("checkout", [("extra", []), ("packing", []),
                                         ("payment", ["extra", "packing"])], version="added")
    d = paid_par(added)
    with pytest.raises(MigrationRefused, match="step payment succeeded, but checkout version "
                       "added has it after packing, which has not run"):
        d.core.migrate_orders("checkout@par", "checkout@added", 0.0, run_added=True)


def test_a_refusal_quotes_three_orders_and_counts_the_rest():
    fanned = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"]),
                                          ("notify", ["fraud"]), ("packing", ["payment"])],
                             version="fan")
    for count, tail in ((3, ""), (4, " (and 1 more)"), (5, " (and 2 more)")):
        d = driver(*(f"o{i}" for i in range(count)))
        d.core.definitions.learn([fanned])
        pay(d)
        with pytest.raises(MigrationRefused) as refused:
            d.core.migrate_orders("checkout@v1", "checkout@fan", d.now)
        text = str(refused.value)
        assert text.count("order o") == 3 and text.endswith(
            "(run_added runs it after the fact)" + tail)


def test_an_order_named_must_exist_and_be_unfinished_said_in_full():
    d = driver("o1")
    with pytest.raises(UnknownOrder) as missing:
        d.core.migrate_orders("checkout@v1", "checkout@v2", 0.0, order_ids=["o-x"])
    assert "o-x" in str(missing.value)
    d.apply(d.core.cancel_order("o1", 0.0))
    with pytest.raises(MigrationRefused) as refused:
        d.core.migrate_orders("checkout@v1", "checkout@v2", 0.0, order_ids=["o1"])
    assert str(refused.value) == "order o1 is cancelled; only unfinished orders move"
