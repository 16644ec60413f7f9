import pytest

from scheduler.engine.workflow import ECOMMERCE, ECOMMERCE_INVOICED, Workflow, WorkflowError


def test_default_workflow_is_payment_packing_shipping():
    assert ECOMMERCE.steps == ("payment", "packing", "shipping")
    assert ECOMMERCE.deps["shipping"] == ("packing",)
    assert ECOMMERCE.dependents["payment"] == ("packing",)
    assert ECOMMERCE.roots() == ("payment",)


def test_fan_out_and_fan_in_workflow_orders_steps_topologically():
    steps = ECOMMERCE_INVOICED.steps
    assert steps[0] == "payment" and steps[-1] == "shipping"
    assert set(ECOMMERCE_INVOICED.dependents["payment"]) == {"packing", "invoice"}
    assert set(ECOMMERCE_INVOICED.deps["shipping"]) == {"packing", "invoice"}


def test_steps_may_be_listed_before_their_dependencies():
    wf = Workflow.define("w", [("c", ["b"]), ("b", ["a"]), ("a", [])])
    assert wf.steps == ("a", "b", "c")


def test_a_cycle_is_rejected_naming_its_steps():
    with pytest.raises(WorkflowError, match=r"cycle through steps \['a', 'b'\]"):
        Workflow.define("w", [("a", ["b"]), ("b", ["a"]), ("c", [])])


def test_a_self_dependency_is_a_cycle():
    with pytest.raises(WorkflowError, match="cycle"):
        Workflow.define("w", [("a", ["a"])])


def test_an_unknown_dependency_is_rejected():
    with pytest.raises(WorkflowError, match="depends on unknown step 'ghost'"):
        Workflow.define("w", [("a", ["ghost"])])


def test_a_duplicate_step_is_rejected():
    with pytest.raises(WorkflowError, match="step 'a' is defined twice"):
        Workflow.define("w", [("a", []), ("a", [])])


def test_an_empty_workflow_is_rejected():
    with pytest.raises(WorkflowError, match="has no steps"):
        Workflow.define("w", [])


@pytest.mark.parametrize("name", ["", 7, None])
def test_a_workflow_without_a_proper_name_is_rejected(name):
    with pytest.raises(WorkflowError, match="^a workflow needs a non-empty name$"):
        Workflow.define(name, [("a", [])])


@pytest.mark.parametrize("step", ["", 7, None])
def test_a_step_without_a_proper_name_is_rejected(step):
    with pytest.raises(WorkflowError, match="^workflow 'w': step names must be non-empty strings$"):
        Workflow.define("w", [("a", []), (step, ["a"])])


def test_a_dependency_listed_twice_is_rejected():
    with pytest.raises(WorkflowError, match="^workflow 'w': step 'b' lists a dependency twice$"):
        Workflow.define("w", [("a", []), ("b", ["a", "a"])])


def test_errors_found_while_ordering_the_steps_name_the_workflow():
    with pytest.raises(WorkflowError, match="^workflow 'loop' has a cycle"):
        Workflow.define("loop", [("a", ["b"]), ("b", ["a"])])
    assert Workflow.define("named", [("a", [])]).name == "named"
