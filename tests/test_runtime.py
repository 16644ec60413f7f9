"""Server settings and the one place that builds the served cluster from them."""

from __future__ import annotations

from web import ORDER

from dashboard import create_app, services
from dashboard.settings import ServeSettings, build_cluster, flask_config


def test_cluster_is_built_from_the_settings_and_not_started():
    settings = ServeSettings(workers=3, heartbeat_interval=0.1, heartbeat_timeout=0.4,
                             max_retries=1, failure_rate=0.5, latency_ms=(1.0, 2.0),
                             persist=False)
    cluster = build_cluster(settings)
    try:
        config = cluster.config
        assert config.workers == 3
        assert (config.heartbeat_interval, config.heartbeat_timeout) == (0.1, 0.4)
        assert config.retry.max_retries == 1
        assert cluster.chaos.view() == {"failure_rate": 0.5, "latency_ms": [1.0, 2.0],
                                        "hang_rate": 0.0, "stuck_rate": 0.0}
        assert cluster.workers() == []  # started by the serving process, not here
    finally:
        cluster.stop()


def test_app_without_a_cluster_builds_owns_starts_and_stops_one():
    settings = ServeSettings(workers=2, heartbeat_interval=0.05, heartbeat_timeout=0.3,
                             failure_rate=0.0, latency_ms=(0.0, 0.0), persist=False, token="t")
    app = create_app(flask_config(settings))
    running = services(app)
    assert running.owns_cluster and app.config["ORDERFLOW_TOKEN"] == "t"
    running.start()
    try:
        assert len(running.cluster.workers()) == 2
        running.cluster.submit(ORDER)
        assert running.cluster.wait_until_idle(10)
    finally:
        running.stop()


def test_app_builds_its_cluster_from_a_settings_dict():
    app = create_app({"CLUSTER_SETTINGS": {"workers": 1}})
    running = services(app)
    try:
        assert running.owns_cluster and running.cluster.config.workers == 1
    finally:
        running.stop()
