import random
import re

import pytest

from scheduler.engine.config import ClusterConfig, ConfigError, RetryPolicy, StepPolicy, backoff


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    policy = RetryPolicy(backoff_base=0.1, backoff_cap=5.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (50, 5.0)]:
        delays = [backoff(retry, policy, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


def test_backoff_is_reproducible_with_a_seeded_rng():
    policy = RetryPolicy()
    first = [backoff(n, policy, random.Random(3)) for n in range(1, 5)]
    again = [backoff(n, policy, random.Random(3)) for n in range(1, 5)]
    assert first == again


def test_backoff_survives_huge_retry_numbers():
    assert 0 <= backoff(10_000, RetryPolicy(), random.Random(0)) <= 5.0


def test_backoff_rejects_retry_zero():
    with pytest.raises(ValueError, match="^retry_number starts at 1$"):
        backoff(0, RetryPolicy(), random.Random(0))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_retries": -1}, "max_retries must be an integer >= 0, got -1"),
        ({"max_retries": 1.5}, "max_retries must be an integer >= 0, got 1.5"),
        ({"backoff_base": -1}, "backoff_base and backoff_cap must be >= 0"),
        ({"backoff_base": 0, "backoff_cap": -1}, "backoff_base and backoff_cap must be >= 0"),
        ({"backoff_base": 2, "backoff_cap": 1}, "backoff_cap must be >= backoff_base"),
    ],
)
def test_bad_retry_policy_is_refused_saying_why(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"backoff_base": 0, "backoff_cap": 0},  # retry at once
        {"backoff_base": 0.5, "backoff_cap": 0.5},  # a constant ceiling
    ],
)
def test_retry_policies_at_the_edge_of_the_ranges_are_accepted(kwargs):
    policy = RetryPolicy(**kwargs)
    assert 0 <= backoff(1, policy, random.Random(0)) <= policy.backoff_cap


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"workers": -1}, "workers"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": 1.0, "heartbeat_timeout": 0.5}, "heartbeat_timeout"),
        ({"heartbeat_interval": 1.0, "heartbeat_timeout": 1.0}, "heartbeat_timeout"),
        ({"max_reassignments": -1}, "max_reassignments"),
        ({"max_reassignments": 1.5}, "max_reassignments"),
        ({"load_epsilon": 0}, "load_epsilon"),
        ({"tail_share": -0.1}, "tail_share must be >= 0, got -0.1"),
        ({"tail_share": float("nan")}, "tail_share"),
        ({"slow_factor": 1.0}, "slow_factor must be > 1, got 1.0"),
        ({"speed_memory": 0}, "speed_memory must be > 0 seconds, got 0"),
        ({"vnodes": 0}, "vnodes"),
        ({"vnodes": 2.0}, "vnodes"),
        ({"event_history": 99}, "event_history must be >= 100"),
        ({"finished_order_history": 0}, "finished_order_history >= 1"),
    ],
)
def test_bad_cluster_config_names_the_setting(kwargs, field):
    with pytest.raises(ConfigError, match=rf"\b{field}"):
        ClusterConfig(**kwargs)


def test_the_edges_of_the_tail_and_speed_settings_are_accepted():
    config = ClusterConfig(tail_share=0, slow_factor=1.0001, speed_memory=0.001)
    assert (config.tail_share, config.slow_factor, config.speed_memory) == (0, 1.0001, 0.001)
    assert (ClusterConfig().tail_share, ClusterConfig().slow_factor) == (1.0, 2.0)
    assert ClusterConfig().speed_memory == 30.0


def test_an_impossible_heartbeat_timeout_is_refused_with_both_values():
    with pytest.raises(ConfigError, match=r"greater than heartbeat_interval \(0.5 <= 1.0\)$"):
        ClusterConfig(heartbeat_interval=1.0, heartbeat_timeout=0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workers": 0},
        {"max_reassignments": 0},
        {"vnodes": 1},
        {"event_history": 100, "finished_order_history": 1},
        {"heartbeat_interval": 0.01, "heartbeat_timeout": 0.011},
    ],
)
def test_settings_at_the_edge_of_their_range_are_accepted(kwargs):
    config = ClusterConfig(**kwargs)
    assert all(getattr(config, k) == v for k, v in kwargs.items())


def test_defaults_match_the_documented_ones():
    config = ClusterConfig()
    assert (config.workers, config.heartbeat_interval, config.heartbeat_timeout) == (4, 0.5, 2.0)
    assert (config.retry.max_retries, config.max_reassignments, config.load_epsilon) == (3, 5, 0.25)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"slots": 0}, "slots must be an integer >= 1, got 0"),
        ({"slots": 1.5}, "slots must be an integer >= 1, got 1.5"),
        ({"prefetch": -1}, "prefetch must be an integer >= 0, got -1"),
        ({"prefetch": 0.5}, "prefetch must be an integer >= 0, got 0.5"),
        ({"step_timeout": 0}, "step_timeout must be > 0 seconds, got 0"),
        ({"step_timeout": -2.5}, "step_timeout must be > 0 seconds, got -2.5"),
        ({"steps": {"payment": 3}}, "steps must map step names to StepPolicy values"),
        ({"workers": 1.5}, "workers must be an integer >= 0, got 1.5"),
        ({"max_unfinished_orders": 0}, "max_unfinished_orders must be an integer >= 1, got 0"),
        ({"max_result_bytes": 0.5}, "max_result_bytes must be an integer >= 1, got 0.5"),
        ({"max_error_chars": -1}, "max_error_chars must be an integer >= 1, got -1"),
        ({"abandon_after": -0.5}, "abandon_after must be >= 0 seconds, got -0.5"),
        ({"max_abandoned": -1}, "max_abandoned must be an integer >= 0 or None, got -1"),
        ({"max_abandoned": 2.5}, "max_abandoned must be an integer >= 0 or None, got 2.5"),
        ({"max_abandoned": True}, "max_abandoned must be an integer >= 0 or None, got True"),
    ],
)
def test_a_bad_cluster_setting_is_refused_with_its_name_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        ClusterConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slots": 1, "prefetch": 0},
        {"step_timeout": 0.001},
        {"max_unfinished_orders": 1, "max_result_bytes": 1, "max_error_chars": 1},
        {"abandon_after": 0, "max_abandoned": 0},
    ],
)
def test_cluster_settings_at_the_low_edge_of_their_range_are_accepted(kwargs):
    config = ClusterConfig(**kwargs)
    assert all(getattr(config, k) == v for k, v in kwargs.items())


@pytest.mark.parametrize("wait", [-1, -0.001, float("nan")])
def test_a_key_commit_wait_below_zero_is_refused_with_its_value(wait):
    with pytest.raises(ConfigError, match=f"^key_commit_wait must be >= 0 seconds, got {wait}$"):
        ClusterConfig(key_commit_wait=wait)


def test_a_key_commit_wait_of_zero_is_accepted_and_the_default_is_five_seconds():
    assert ClusterConfig(key_commit_wait=0).key_commit_wait == 0
    assert ClusterConfig().key_commit_wait == 5.0


# --------------------------------------------------------------------------- step policies


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"retry": 3}, "retry must be a RetryPolicy"),
        ({"tags": {"payments"}}, "tags must be a frozenset of non-empty strings"),
        ({"tags": frozenset({""})}, "tags must be a frozenset of non-empty strings"),
        ({"tags": frozenset({"  "})}, "tags must be a frozenset of non-empty strings"),
        ({"tags": frozenset({7})}, "tags must be a frozenset of non-empty strings"),
        ({"timeout": 0}, "timeout must be > 0 seconds, got 0"),
        ({"timeout": -1.5}, "timeout must be > 0 seconds, got -1.5"),
        ({"max_in_flight": 0}, "max_in_flight must be an integer >= 1, got 0"),
        ({"max_in_flight": 1.5}, "max_in_flight must be an integer >= 1, got 1.5"),
        ({"rate": 0}, "rate must be > 0 starts per second, got 0"),
        ({"rate": -1.0}, "rate must be > 0 starts per second, got -1.0"),
        ({"rate": 1.0, "burst": 0}, "burst must be an integer >= 1, got 0"),
        ({"rate": 1.0, "burst": 1.5}, "burst must be an integer >= 1, got 1.5"),
        ({"burst": 2}, "burst needs a rate"),
    ],
)
def test_a_bad_step_policy_is_refused_saying_why(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        StepPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"retry": RetryPolicy(max_retries=0)},
        {"tags": frozenset({"payments", "eu"})},
        {"timeout": 0.5},
        {"max_in_flight": 1},
        {"rate": 0.5},
        {"rate": 0.5, "burst": 1},
    ],
)
def test_step_policies_at_the_edge_of_their_ranges_are_accepted(kwargs):
    policy = StepPolicy(**kwargs)
    assert all(getattr(policy, k) == v for k, v in kwargs.items())


@pytest.mark.parametrize(
    "kwargs,limited",
    [({}, False), ({"timeout": 1.0}, False), ({"tags": frozenset({"x"})}, False),
     ({"max_in_flight": 2}, True), ({"rate": 2.0}, True)],
)
def test_a_step_is_limited_only_by_a_concurrency_or_a_rate_limit(kwargs, limited):
    assert StepPolicy(**kwargs).limited is limited


def test_a_step_uses_its_own_retry_policy_and_time_limit_or_else_the_clusters():
    own = RetryPolicy(max_retries=9)
    config = ClusterConfig(step_timeout=30.0,
                           steps={"payment": StepPolicy(retry=own, timeout=2.5)})
    assert config.retry_of("payment") is own
    assert config.retry_of("packing") is config.retry
    assert config.timeout("payment") == 2.5
    assert config.timeout("packing") == 30.0
    assert config.policy("packing") == StepPolicy()


def test_a_step_policy_without_a_retry_policy_falls_back_to_the_clusters():
    config = ClusterConfig(steps={"payment": StepPolicy(timeout=1.0)})
    assert config.retry_of("payment") is config.retry


def test_a_thread_worker_may_abandon_a_thread_per_attempt_of_each_slot_unless_set_otherwise():
    assert ClusterConfig().abandon_limit(8) == 32  # 8 slots, 4 attempts each
    assert ClusterConfig(retry=RetryPolicy(max_retries=0)).abandon_limit(4) == 4
    assert ClusterConfig(max_abandoned=3).abandon_limit(8) == 3
    assert ClusterConfig(max_abandoned=0).abandon_limit(8) == 0


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (2.5, 2.5), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0),
    ("7d", 604800.0), ("2w", 1209600.0), (" 1.5 h ", 5400.0), ("0s", 0.0)])
def test_a_duration_is_seconds_or_a_number_with_a_unit(value, seconds):
    from scheduler.engine.config import duration

    assert duration(value) == seconds and isinstance(duration(value), float)


@pytest.mark.parametrize("value", ["", "30", "30x", "m", "-5m", "1.m", "5 m s", True, None, [5]])
def test_anything_else_is_refused_naming_what_it_was_and_the_forms_accepted(value):
    from scheduler.engine.config import duration

    with pytest.raises(ConfigError) as refused:
        duration(value, "the schedule's catch-up window")
    assert str(refused.value) == (
        "the schedule's catch-up window must be seconds or a duration such as 90s, 30m, 12h, "
        f"7d or 2w, got {value!r}")
    with pytest.raises(ConfigError, match="^a duration must be"):
        duration(value)
