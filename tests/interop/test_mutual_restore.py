"""Python and celeriac workers restore each other's messages. Both record what they hold in
kombu's unacked/unacked_index, so a killed worker's messages can be restored by the other kind:
Python by its visibility timeout (kombu's restore_visible), celeriac the same way for holders
that leave no celeriac liveness key."""
import json
import os
import signal
import time

from conftest import wait_inspect


def marks(path):
    """task id -> hostnames that ran it (one file per execution)."""
    runs = {}
    for name in os.listdir(path):
        task_id = name.split(".")[0]
        runs.setdefault(task_id, []).append((path / name).read_text().strip())
    return runs


def test_python_worker_restores_what_a_killed_celeriac_worker_held(
        workers, celery_app, broker, tmp_path):
    victim = workers.celeriac("held", "-c", "1", "--prefetch-multiplier", "4")
    running = celery_app.signature("tests.mark").delay(str(tmp_path), 3000)
    waiting = [celery_app.signature("tests.mark").delay(str(tmp_path)) for _ in range(3)]
    wait_inspect(celery_app, victim.node, "active", 1)
    assert broker.client().hlen("unacked") == 4
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(5)
    # -c 4: every restored message starts (and, acked early, leaves unacked) at once; one left
    # waiting in a Python worker's prefetch longer than the short visibility timeout would be
    # restored by that worker itself, run twice (kombu's documented hazard).
    python = workers.python("restorer", "-c", "4", env={"INTEROP_TRANSPORT_OPTIONS": json.dumps(
        {"visibility_timeout": 2, "unacked_restore_interval": 1, "unacked_restore_throttle": 1})})
    results = [r.get(timeout=40) for r in [running, *waiting]]
    assert results == [python.node] * 4
    runs = marks(tmp_path)
    assert {r.id: runs[r.id] for r in [running, *waiting]} == {
        r.id: [python.node] for r in [running, *waiting]}
    assert broker.client().hlen("unacked") == 0


def test_celeriac_worker_restores_what_a_killed_python_worker_held(
        workers, celery_app, broker, tmp_path):
    victim = workers.python("held", "-c", "1", env={"INTEROP_ACKS_LATE": "1"})
    running = celery_app.signature("tests.mark").delay(str(tmp_path), 4000)
    wait_inspect(celery_app, victim.node, "active", 1)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the pool's children too
    victim.proc.wait(5)
    assert broker.client().hlen("unacked") >= 1
    killed_at = time.time()
    restorer = workers.celeriac("restorer", "--visibility-timeout", "3")
    assert running.get(timeout=40) == restorer.node
    # The mark file is written after the sleep, so the killed run left none.
    assert marks(tmp_path)[running.id] == [restorer.node]
    assert time.time() - killed_at >= 3  # not before the visibility timeout
    assert broker.client().hlen("unacked") == 0
    assert broker.client().get("unacked_mutex") is None  # released for kombu's restorers
