"""Issue 3: soft and hard time limits, revoke before and during execution, expires, a pool
child that dies, and the time_limit remote-control command, in both pools (--pool threads and
--pool processes), seen by a real Celery client. What is stored and sent is compared with what
a real Celery 5.7 prefork worker stores and sends (captured in
tests/data/celery-5.7/pool-limits-revoke.json)."""
import base64
import json
import re
import threading
import time
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded

from conftest import inspect_node

CAPTURED = json.loads((Path(__file__).resolve().parents[1] / "data" / "celery-5.7" /
                       "pool-limits-revoke.json").read_text())
POOLS = ["threads", "processes"]


class Events:
    """Task events published by the worker (-E), collected on a pub/sub connection."""

    def __init__(self, broker):
        self.items = []
        self._pubsub = broker.client().pubsub()
        self._pubsub.psubscribe("/0.celeryev/task.*")
        self._pubsub.get_message(timeout=1)  # the subscribe confirmation
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            m = self._pubsub.get_message(timeout=0.1)
            if not m or m["type"] != "pmessage":
                continue
            body = json.loads(base64.b64decode(json.loads(m["data"])["body"]))
            self.items.extend(body if isinstance(body, list) else [body])

    def of(self, task_id, wait_for=None, timeout=10):
        deadline = time.time() + timeout
        while True:
            found = [e for e in self.items if e.get("uuid") == task_id]
            if wait_for is None or any(e["type"] == wait_for for e in found):
                return found
            if time.time() > deadline:
                raise AssertionError(f"no {wait_for} for {task_id}: {found}")
            time.sleep(0.05)

    def close(self):
        self._stop = True
        self._thread.join()
        self._pubsub.close()


@pytest.fixture
def events(broker):
    e = Events(broker)
    yield e
    e.close()


def stored(broker, task_id, timeout=10):
    """The raw meta in the result backend, waited for until the task is ready."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        raw = broker.client(1).get(f"celery-task-meta-{task_id}")
        if raw:
            meta = json.loads(raw)
            if meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                return meta
        time.sleep(0.02)
    raise AssertionError(f"no result for {task_id}")


def same_shape(ours, theirs):
    """Stored metas agree on everything but ids and times."""
    for key in ("status", "result", "children"):
        assert ours[key] == theirs[key], key
    assert (ours["traceback"] is None) == (theirs["traceback"] is None)
    assert list(ours) == list(theirs)


def start(workers, name, pool, *args):
    return workers.celeriac(name, "--pool", pool, "-E", *args)


def assert_still_serving(celery_app, node):
    assert celery_app.signature("tasks.add").delay(2, 3).get(timeout=10) == 5


@pytest.mark.parametrize("pool", POOLS)
def test_soft_limit_task_sees_the_cancellation(workers, celery_app, pool):
    start(workers, f"soft-seen-{pool}", pool)
    r = celery_app.signature("tests.cancellable").apply_async((10,), soft_time_limit=0.3)
    t0 = time.time()
    assert r.get(timeout=10) == "soft time limit"
    assert time.time() - t0 < 3


@pytest.mark.parametrize("pool", POOLS)
def test_soft_limit_uncaught_is_failure_as_celery_stores_it(workers, broker, celery_app, events,
                                                            pool):
    start(workers, f"soft-fail-{pool}", pool)
    r = celery_app.signature("tasks.sleep").apply_async((10,), soft_time_limit=0.3)
    with pytest.raises(SoftTimeLimitExceeded):
        r.get(timeout=10)
    meta = stored(broker, r.id)
    same_shape(meta, CAPTURED["soft"]["meta"])
    failed = [e for e in events.of(r.id, "task-failed") if e["type"] == "task-failed"]
    assert failed[0]["exception"] == "SoftTimeLimitExceeded()"


@pytest.mark.parametrize("pool", POOLS)
def test_hard_limit_fails_the_task_and_the_worker_keeps_serving(workers, broker, celery_app,
                                                                events, pool):
    w = start(workers, f"hard-{pool}", pool, "-c", "1")
    # tests.spin never looks at its cancel flag: only the pool can stop it.
    r = celery_app.signature("tests.spin").apply_async((6,), time_limit=1.5)
    deadline = time.time() + 1
    while not (active := inspect_node(celery_app, w.node, "active")) and time.time() < deadline:
        time.sleep(0.05)
    if pool == "processes":  # the child running it, as Celery's prefork reports worker_pid
        stats = inspect_node(celery_app, w.node, "stats")
        assert active[0]["worker_pid"] in stats["pool"]["processes"]
        assert active[0]["worker_pid"] != stats["pid"]
    # Remote control never waits on a running task.
    t0 = time.time()
    replies = celery_app.control.inspect(destination=[w.node], timeout=1).ping()
    assert replies == {w.node: {"ok": "pong"}}
    assert time.time() - t0 < 1.5
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=10)
    meta = stored(broker, r.id)
    assert meta["result"] == {"exc_type": "TimeLimitExceeded", "exc_message": [1.5],
                              "exc_module": "billiard.exceptions"}
    assert meta["traceback"] is None  # written by the worker, not the task, as Celery's
    assert list(meta) == list(CAPTURED["hard"]["meta"])
    failed = [e for e in events.of(r.id, "task-failed") if e["type"] == "task-failed"]
    assert "TimeLimitExceeded" in failed[0]["traceback"]
    # -c 1: the next task needs the replaced child / the replacement thread.
    t0 = time.time()
    assert_still_serving(celery_app, w.node)
    assert time.time() - t0 < 3
    assert w.alive()


@pytest.mark.parametrize("pool", POOLS)
def test_revoke_before_execution_never_runs(workers, broker, celery_app, events, tmp_path, pool):
    w = start(workers, f"revoke-before-{pool}", pool, "-c", "1")
    tmp_path = tmp_path / "marks"  # tests.mark leaves a file here if it runs
    tmp_path.mkdir()
    busy = celery_app.signature("tasks.sleep").delay(1.5)
    r = celery_app.signature("tests.mark").delay(str(tmp_path))
    deadline = time.time() + 5
    while not any(t["id"] == r.id for t in inspect_node(celery_app, w.node, "reserved")):
        assert time.time() < deadline, "the task was never reserved"
    celery_app.control.revoke(r.id)
    # As Celery >= 5.6.2: REVOKED is stored at once, not when the message is discarded.
    assert stored(broker, r.id, timeout=1)["status"] == "REVOKED"
    assert not busy.ready()
    with pytest.raises(TaskRevokedError):
        r.get(timeout=10)
    assert busy.get(timeout=10) == 1.5
    same_shape(stored(broker, r.id), {**CAPTURED["expired"]["meta"],
                                      "result": {"exc_type": "TaskRevokedError",
                                                 "exc_message": ["revoked"],
                                                 "exc_module": "celery.exceptions"}})
    revoked = [e for e in events.of(r.id, "task-revoked") if e["type"] == "task-revoked"][0]
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (False, None, False)
    time.sleep(0.3)
    assert not list(tmp_path.iterdir())  # it never ran


@pytest.mark.parametrize("pool,task,signal,signum", [
    ("threads", "tasks.sleep", None, 15),       # cooperative: the thread sees its flag
    ("threads", "tests.spin", None, 15),        # stuck: the thread is abandoned
    ("processes", "tests.spin", None, 15),      # the child gets SIGTERM
    ("processes", "tests.spin", "SIGKILL", 9),
])
def test_revoke_with_terminate_during_execution(workers, broker, celery_app, events, pool, task,
                                                signal, signum):
    w = start(workers, f"terminate-{pool}", pool, "-c", "1")
    r = celery_app.signature(task).delay(6)
    events.of(r.id, "task-started")
    kwargs = {"signal": signal} if signal else {}
    t0 = time.time()
    celery_app.control.revoke(r.id, terminate=True, **kwargs)
    with pytest.raises(TaskRevokedError):
        r.get(timeout=10)
    assert time.time() - t0 < 3
    same_shape(stored(broker, r.id), CAPTURED["term"]["meta"])
    revoked = [e for e in events.of(r.id, "task-revoked") if e["type"] == "task-revoked"][0]
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (True, signum, False)
    assert not [e for e in events.of(r.id) if e["type"] == "task-failed"]
    assert_still_serving(celery_app, w.node)


@pytest.mark.parametrize("pool", POOLS)
def test_expired_task_is_revoked_without_running(workers, broker, celery_app, events, tmp_path,
                                                 pool):
    start(workers, f"expires-{pool}", pool)
    tmp_path = tmp_path / "marks"
    tmp_path.mkdir()
    r = celery_app.signature("tests.mark").apply_async((str(tmp_path),), expires=0.001)
    with pytest.raises(TaskRevokedError):
        r.get(timeout=10)
    same_shape(stored(broker, r.id), CAPTURED["expired"]["meta"])
    got = events.of(r.id, "task-revoked")
    # As Celery: discarded before task-received, one task-revoked with expired=True.
    assert [e["type"] for e in got] == [e["type"] for e in CAPTURED["expired"]["events"]]
    assert (got[0]["terminated"], got[0]["signum"], got[0]["expired"]) == (False, None, True)
    assert not list(tmp_path.iterdir())


def test_a_child_that_aborts_does_not_take_the_worker_down(workers, broker, celery_app, events):
    # --max-deliveries 1: fail at the first lost child, as Celery does (test_poison.py covers
    # the default, which requeues until the fifth).
    w = start(workers, "abort", "processes", "-c", "1", "--max-deliveries", "1")
    r = celery_app.signature("tests.abort").delay()
    with pytest.raises(Exception) as info:
        r.get(timeout=10)
    assert type(info.value).__name__ == "WorkerLostError"
    meta = stored(broker, r.id)
    theirs = CAPTURED["abort"]["meta"]
    assert meta["result"]["exc_type"] == theirs["result"]["exc_type"]
    assert meta["result"]["exc_module"] == theirs["result"]["exc_module"]
    pattern = r"Worker exited prematurely: signal 6 \(SIGABRT\) Job: \d+\."
    assert re.fullmatch(pattern, theirs["result"]["exc_message"][0])
    assert re.fullmatch(pattern, meta["result"]["exc_message"][0])
    assert meta["traceback"] is None
    events.of(r.id, "task-failed")
    assert_still_serving(celery_app, w.node)
    assert w.alive()


@pytest.mark.parametrize("pool", POOLS)
def test_remote_time_limit_applies_to_later_tasks(workers, broker, celery_app, pool):
    w = start(workers, f"remote-limit-{pool}", pool)
    assert celery_app.signature("tests.spin").delay(0.2).get(timeout=10) == 0.2
    reply = celery_app.control.time_limit("tests.spin", soft=None, hard=0.5, reply=True,
                                          destination=[w.node])
    assert reply == [{w.node: {"ok": "time limits set successfully"}}]
    r = celery_app.signature("tests.spin").delay(5)
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=10)
    assert stored(broker, r.id)["result"]["exc_message"] == [0.5]
    # Cleared again: the task runs to the end.
    celery_app.control.time_limit("tests.spin", soft=None, hard=None, reply=True,
                                  destination=[w.node])
    assert celery_app.signature("tests.spin").delay(0.8).get(timeout=10) == 0.8


def test_worker_flags_and_task_defaults(workers, broker, celery_app):
    start(workers, "flags", "processes", "--time-limit", "1", "--soft-time-limit", "0.2")
    # The worker's soft limit reaches a task that watches for it...
    assert celery_app.signature("tests.cancellable").delay(5).get(timeout=10) == "soft time limit"
    # ...its hard limit one that does not...
    r = celery_app.signature("tests.spin").delay(5)
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=10)
    assert stored(broker, r.id)["result"]["exc_message"] == [1]
    # ...a task's own options win over the flags (tests.limited: soft 0.5 s, not 0.2 s)...
    t0 = time.time()
    assert celery_app.signature("tests.limited").delay(5).get(timeout=10) == "soft time limit"
    assert 0.45 < time.time() - t0 < 2
    # ...and the message header wins over all of them ([hard, soft] on the wire).
    r = celery_app.signature("tests.spin").apply_async((1.5,), time_limit=3, soft_time_limit=2)
    assert r.get(timeout=10) == 1.5


def test_process_pool_runs_retries_chains_rejects_and_failures_like_threads(workers, broker,
                                                                          celery_app):
    from celery import chain
    start(workers, "pool-canvas", "processes")
    assert celery_app.signature("tests.flaky").delay(1).get(timeout=15) == 1  # one retry
    c = chain(celery_app.signature("tasks.add", (1, 2)), celery_app.signature("tasks.add", (10,)))
    assert c.apply_async().get(timeout=10) == 13
    r = celery_app.signature("tests.fail").delay("boom")
    with pytest.raises(ValueError, match="boom"):
        r.get(timeout=10)
    assert "ValueError: boom" in r.traceback
    # Reject from a child: requeued and run again, or dead-lettered.
    assert celery_app.signature("tests.reject").delay(True).get(timeout=15) == "redelivered"
    celery_app.signature("tests.reject").delay(False)
    deadline = time.time() + 10
    while not broker.client().llen("celeriac.deadletter"):
        assert time.time() < deadline, "the rejected message never reached the dead-letter list"
        time.sleep(0.05)
    letter = json.loads(broker.client().lindex("celeriac.deadletter", 0))
    assert letter["reason"] == "rejected by the task: not wanted"
    stats = inspect_node(celery_app, "pool-canvas@interop", "stats")
    assert stats["pool"]["implementation"] == "celeriac:processes"
    assert len(stats["pool"]["processes"]) == 2 and stats["pid"] not in stats["pool"]["processes"]


@pytest.mark.parametrize("pool", POOLS)
def test_heartbeats_and_control_go_on_while_a_task_spins(workers, broker, celery_app, pool):
    w = start(workers, f"busy-{pool}", pool, "-c", "1")
    pubsub = broker.client().pubsub()
    pubsub.psubscribe("/0.celeryev/worker.heartbeat")
    pubsub.get_message(timeout=1)
    r = celery_app.signature("tests.spin").delay(4.5)
    t0 = time.time()
    while not inspect_node(celery_app, w.node, "active"):
        assert time.time() - t0 < 2
    beats, pings = [], []
    while time.time() - t0 < 4.0:
        m = pubsub.get_message(timeout=0.1)
        if m and m["type"] == "pmessage":
            beats.append(json.loads(base64.b64decode(json.loads(m["data"])["body"])))
        if len(pings) < 2:
            p0 = time.time()
            reply = celery_app.control.inspect(destination=[w.node], timeout=1).ping()
            pings.append((reply, time.time() - p0))
    pubsub.close()
    assert not r.ready()  # all of the above happened while the task ran
    assert any(b["hostname"] == w.node and b["active"] == 1 for b in beats)
    assert all(reply == {w.node: {"ok": "pong"}} and took < 1.5 for reply, took in pings)
    assert r.get(timeout=10) == 4.5
