import random

import pytest

from scheduler.engine.config import ClusterConfig, ConfigError, RetryPolicy, backoff


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
    with pytest.raises(ValueError):
        backoff(0, RetryPolicy(), random.Random(0))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"backoff_base": -1}, {"backoff_base": 2, "backoff_cap": 1}],
)
def test_bad_retry_policy_is_refused(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"workers": -1}, "workers"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": 1.0, "heartbeat_timeout": 0.5}, "heartbeat_timeout"),
        ({"load_epsilon": 0}, "load_epsilon"),
        ({"vnodes": 0}, "vnodes"),
    ],
)
def test_bad_cluster_config_names_the_setting(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ClusterConfig(**kwargs)


def test_defaults_match_the_documented_ones():
    config = ClusterConfig()
    assert (config.workers, config.heartbeat_interval, config.heartbeat_timeout) == (4, 0.5, 2.0)
    assert (config.retry.max_retries, config.max_reassignments, config.load_epsilon) == (3, 5, 0.25)
