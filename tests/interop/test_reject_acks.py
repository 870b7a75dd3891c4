"""Celery's Reject and acks_late semantics on celeriac: a task that rejects its message with
requeue gets it again; without requeue the message goes to the dead-letter list (Celery would
drop it) and no result is stored; both send task-rejected as Celery does. A task with
acks_late=false is acked at its start: if its worker dies mid-run it is not run again."""
import json
import signal
import threading
import time

from celery.events.state import State

from conftest import inspect_node


class Events:
    """Collects task events with Celery's own receiver and state machine (what Flower uses)."""

    def __init__(self, app):
        self.events, self.state = [], State()
        self.conn = app.connection()
        self.receiver = app.events.Receiver(self.conn, handlers={"*": self.on_event})
        self.thread = threading.Thread(target=self.receiver.capture,
                                       kwargs={"limit": None, "timeout": None}, daemon=True)
        self.thread.start()
        time.sleep(0.5)  # subscribed before anything is sent

    def on_event(self, event):
        self.events.append(event)
        self.state.event(event)

    def wait_for(self, type_, uuid, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e["type"] == type_ and e.get("uuid") == uuid:
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no {type_} for {uuid}: {[e['type'] for e in self.events]}")

    def close(self):
        self.receiver.should_stop = True
        self.thread.join(5)
        self.conn.release()


def test_reject_with_and_without_requeue(workers, celery_app, broker):
    events = Events(celery_app)
    try:
        workers.celeriac("rj", "-E")
        again = celery_app.signature("tests.reject").delay(True)
        dropped = celery_app.signature("tests.reject").delay(False)
        assert again.get(timeout=15) == "redelivered"
        assert events.wait_for("task-rejected", again.id)["requeue"] is True
        assert events.wait_for("task-rejected", dropped.id)["requeue"] is False
        # Celery's state machine (Flower's) records the rejection; as with a Python worker,
        # REJECTED ranks below STARTED, so the task's state stays STARTED.
        assert events.state.tasks[dropped.id].rejected
        time.sleep(0.5)
        assert dropped.state == "PENDING"  # no result, as Celery
        letters = [json.loads(x) for x in broker.client().lrange("celeriac.deadletter", 0, -1)]
        assert [l["reason"] for l in letters] == ["rejected by the task: not wanted"]
        assert json.loads(letters[0]["message"])["headers"]["id"] == dropped.id
        assert broker.client().hlen("unacked") == 0
    finally:
        events.close()


def test_acks_early_task_is_not_rerun_after_a_crash(workers, celery_app, broker, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    w = workers.celeriac("early")
    once = celery_app.signature("tests.mark_once").delay(str(marks), 3000)
    deadline = time.time() + 10
    while time.time() < deadline and not inspect_node(celery_app, w.node, "active"):
        time.sleep(0.05)
    assert broker.client().hlen("unacked") == 0  # acked when it started
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(5)
    workers.celeriac("early")
    later = celery_app.signature("tests.mark_once").delay(str(marks))
    assert later.get(timeout=15)
    time.sleep(3.5)
    assert once.state == "PENDING"
    assert [p.name.split(".")[0] for p in marks.iterdir()] == [later.id]
