"""Real Flower (PyPI) against celeriac workers: workers online with stats and pool size, tasks
with states and runtimes, and shutdown / revoke / pool grow issued through Flower's API."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Process, free_port, run_cli

VENV_BIN = Path(sys.executable).parent


def api(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def flower(broker, tmp_path):
    port = free_port()
    env = dict(os.environ, FLOWER_UNAUTHENTICATED_API="1")
    p = Process([str(VENV_BIN / "celery"), "--broker", broker.url(0), "--result-backend",
                 broker.url(1), "flower", "--address=127.0.0.1", f"--port={port}"],
                "flower", tmp_path, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            api(port, "/api/workers")
            break
        except Exception:
            time.sleep(0.2)
    else:
        raise AssertionError("flower did not start:\n" + p.output())
    yield port
    p.stop()


def wait_until(check, timeout=15.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_flower_sees_workers_and_tasks(workers, broker, flower, celery_app):
    w = workers.celeriac("fw1", "-c", "2")
    assert wait_until(lambda: api(flower, "/api/workers?status=true").get(w.node),
                      what="worker online in flower")
    # Flower's inspector learns about a worker from a refresh (its inspect calls).
    def inspected():
        info = api(flower, "/api/workers?refresh=1").get(w.node) or {}
        complete = all(k in info for k in ("stats", "registered", "active_queues"))
        return info if complete else None
    info = wait_until(inspected, what="worker in flower's inspector")
    assert info["stats"]["pool"]["max-concurrency"] == 2
    assert "tasks.add" in info["registered"]
    assert [q["name"] for q in info["active_queues"]] == ["celery"]
    # Flower turns task events on by itself (enable_events every few seconds); wait for it.
    wait_until(lambda: ((celery_app.control.inspect(destination=[w.node], timeout=1).conf() or {})
                        .get(w.node, {}).get("worker_send_task_events")),
               what="task events enabled")
    ok = run_cli("call", "tasks.sleep", "0.2", "--wait", broker=broker)
    bad = run_cli("call", "tests.fail", "boom", "--wait", broker=broker)
    assert ok.returncode == 0 and bad.returncode == 1

    def states():
        seen = {t["name"]: t for t in api(flower, "/api/tasks").values()}
        final = {"SUCCESS", "FAILURE"}
        done = all(seen.get(n, {}).get("state") in final for n in ("tasks.sleep", "tests.fail"))
        return seen if done else None
    seen = wait_until(states, what="tasks in flower")
    assert seen["tasks.sleep"]["state"] == "SUCCESS"
    assert 0.15 < seen["tasks.sleep"]["runtime"] < 2
    assert seen["tasks.sleep"]["worker"] == w.node
    assert seen["tests.fail"]["state"] == "FAILURE"
    assert "boom" in seen["tests.fail"]["exception"]


def test_flower_controls_take_effect(workers, broker, flower, celery_app):
    w = workers.celeriac("fw2", "-c", "2")
    wait_until(lambda: api(flower, "/api/workers?refresh=1").get(w.node), what="known to flower")
    # Flower's event receiver subscribes some time after its HTTP side is up; the offline check
    # below needs it to have seen this worker's events (a heartbeat comes every 2 s).
    wait_until(lambda: w.node in api(flower, "/api/workers?status=true"),
               what="worker events seen by flower")
    api(flower, f"/api/worker/pool/grow/{w.node}?n=2", "POST")
    stats = wait_until(lambda: (celery_app.control.inspect(destination=[w.node], timeout=1)
                                .stats() or {}).get(w.node), what="stats")
    assert stats["pool"]["max-concurrency"] == 4
    r = celery_app.signature("tasks.add").apply_async((1, 1), countdown=2)
    time.sleep(0.3)
    api(flower, f"/api/task/revoke/{r.id}", "POST")
    with pytest.raises(Exception) as info:
        r.get(timeout=10)
    assert type(info.value).__name__ == "TaskRevokedError"
    api(flower, f"/api/worker/shutdown/{w.node}", "POST")
    w.proc.wait(15)
    assert w.proc.returncode == 0
    wait_until(lambda: api(flower, "/api/workers?status=true").get(w.node) is False,
               what="worker offline in flower")
