"""Acceptance 6: malformed messages go to the dead-letter list; unknown tasks fail as Celery."""
import base64
import json

import pytest


def envelope(body, content_type="application/json", headers=None, tag="t", encode=True):
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode() if encode else body,
        "content-encoding": "utf-8", "content-type": content_type,
        "headers": headers if headers is not None else {"task": "tasks.add", "id": "id-" + tag},
        "properties": {"body_encoding": "base64", "delivery_tag": tag, "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": "celery"}}})


def test_bad_messages_are_dead_lettered_and_the_worker_keeps_going(workers, celery_app, broker):
    workers.celeriac("cm1")
    r = broker.client()
    bad = {
        "bad-json": "{this is not json",
        "bad-base64": envelope("@@@", encode=False, tag="b64"),
        "no-headers": envelope("[[1, 2], {}, {}]", headers={}, tag="nohdr"),
        "pickle": envelope("\x80\x04K\x01.", content_type="application/x-python-serialize",
                           tag="pkl"),
        "no-tag": json.dumps({"body": "W10=", "headers": {"task": "tasks.add", "id": "x"},
                              "properties": {}}),
    }
    for text in bad.values():
        r.lpush("celery", text)
    assert celery_app.signature("tasks.add").delay(2, 3).get(timeout=10) == 5
    entries = [json.loads(e) for e in r.lrange("celeriac.deadletter", 0, -1)]
    assert len(entries) == len(bad)
    by_message = {e["message"]: e for e in entries}
    assert "not valid JSON" in by_message[bad["bad-json"]]["reason"]
    assert "base64" in by_message[bad["bad-base64"]]["reason"]
    assert "not a task message" in by_message[bad["no-headers"]]["reason"]
    assert "pickle" in by_message[bad["pickle"]]["reason"]
    assert "delivery_tag" in by_message[bad["no-tag"]]["reason"]
    for e in entries:
        assert e["queue"] == "celery" and e["worker"] == "cm1@interop"
    assert r.hlen("unacked") == 0  # nothing left half-taken


def test_unregistered_task_is_a_failure_like_celery(workers, celery_app, broker):
    workers.celeriac("cm2")
    res = celery_app.signature("tasks.nope").delay(1)
    with pytest.raises(Exception) as info:
        res.get(timeout=10)
    assert type(info.value).__name__ == "NotRegistered"
    meta = json.loads(broker.client(1).get(f"celery-task-meta-{res.id}"))
    assert meta["status"] == "FAILURE"
    assert meta["result"] == {"exc_type": "NotRegistered", "exc_message": ["tasks.nope"],
                              "exc_module": "celery.exceptions"}
    assert meta["traceback"] is None
