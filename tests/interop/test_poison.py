"""A message that kills its worker every time it runs (a native crash) is a poison message: after
it was delivered --max-deliveries times (default 5) it lands in the dead-letter list with a
FAILURE result, instead of crashing restarted workers forever; other tasks keep flowing."""
import json
import time

import pytest
from celery.exceptions import WorkerLostError


def test_crashing_message_is_dead_lettered_after_five_deliveries(workers, celery_app, broker):
    worker = workers.celeriac("poison", "-c", "1")
    poison = celery_app.signature("tests.abort").delay()
    echoes = []
    deaths = 0
    deadline = time.time() + 60
    # Play the process supervisor (systemd's Restart=always): restart the worker under the same
    # name whenever it dies, sending ordinary tasks all along.
    while time.time() < deadline and poison.state == "PENDING":
        echoes.append(celery_app.signature("tests.echo").delay(len(echoes)))
        if not worker.alive():
            deaths += 1
            worker = workers.celeriac("poison", "-c", "1", wait=False)
        time.sleep(0.05)
    assert poison.state == "FAILURE"
    with pytest.raises(WorkerLostError, match="delivered 5 times without completing"):
        poison.get(timeout=5)
    assert deaths == 5
    assert [e.get(timeout=30) for e in echoes] == [
        {"args": [i], "kwargs": {}} for i in range(len(echoes))]
    letters = [json.loads(x) for x in broker.client().lrange("celeriac.deadletter", 0, -1)]
    assert len(letters) == 1
    assert "delivered 5 times" in letters[0]["reason"]
    assert json.loads(letters[0]["message"])["headers"]["id"] == poison.id
    r = broker.client()
    assert r.hlen("unacked") == 0


def test_prefetched_messages_of_a_crashed_worker_are_not_counted(workers, celery_app, broker):
    """Only the message that was running when the worker died counts a delivery: the others it
    had prefetched run normally, however often the worker crashes."""
    worker = workers.celeriac("poison", "-c", "1", "--max-deliveries", "2",
                              "--prefetch-multiplier", "8")
    poison = celery_app.signature("tests.abort").delay()
    bystanders = [celery_app.signature("tests.echo").delay(i) for i in range(5)]
    deaths = 0
    deadline = time.time() + 30
    while time.time() < deadline and poison.state == "PENDING":
        if not worker.alive():
            deaths += 1
            worker = workers.celeriac("poison", "-c", "1", "--max-deliveries", "2",
                                      "--prefetch-multiplier", "8", wait=False)
        time.sleep(0.02)
    assert poison.state == "FAILURE"
    assert deaths == 2
    assert [b.get(timeout=10) for b in bystanders] == [
        {"args": [i], "kwargs": {}} for i in range(5)]


def test_process_pool_requeues_a_crashing_message_until_the_fifth_lost_child(
        workers, celery_app, broker):
    """In the process pool only the child dies: the worker requeues the message with its count
    raised (as Celery's task_reject_on_worker_lost) and dead-letters it at the fifth."""
    worker = workers.celeriac("poison-pool", "--pool", "processes", "-c", "1")
    poison = celery_app.signature("tests.abort").delay()
    echoes = [celery_app.signature("tests.echo").delay(i) for i in range(5)]
    with pytest.raises(WorkerLostError, match=r"Worker exited prematurely: signal 6 \(SIGABRT\)"):
        poison.get(timeout=60)
    assert [e.get(timeout=30) for e in echoes] == [{"args": [i], "kwargs": {}} for i in range(5)]
    assert worker.alive()
    letters = [json.loads(x) for x in broker.client().lrange("celeriac.deadletter", 0, -1)]
    assert len(letters) == 1
    assert letters[0]["reason"].startswith("delivered 5 times without completing: Worker exited")
    assert worker.output().count("event=worker-lost") == 5
