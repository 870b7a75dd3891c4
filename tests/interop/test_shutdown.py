"""Warm shutdown: SIGTERM during a running task lets it finish and store its result, the worker
exits 0, and the tasks it had prefetched go back to the queue for another worker."""
import signal
import time

from conftest import inspect_node


def test_sigterm_finishes_running_task_and_requeues_prefetched(workers, celery_app, broker):
    w = workers.celeriac("sd1", "-c", "1", "--prefetch-multiplier", "4")
    running = celery_app.signature("tasks.sleep").delay(2)
    waiting = [celery_app.signature("tasks.add").apply_async((i, 0), countdown=1.5)
               for i in range(3)]
    deadline = time.time() + 5
    while time.time() < deadline:
        active = (celery_app.control.inspect(destination=[w.node], timeout=0.5).active() or {})
        if active.get(w.node):
            break
    scheduled = inspect_node(celery_app, w.node, "scheduled")
    assert len(scheduled) == 3  # held by this worker
    w.proc.send_signal(signal.SIGTERM)
    w.proc.wait(15)
    assert w.proc.returncode == 0
    assert running.state == "SUCCESS" and running.result == 2
    assert all(r.state == "PENDING" for r in waiting)
    r = broker.client()
    assert r.hlen("unacked") == 0
    assert r.llen("celery") == 3  # back in the queue
    workers.celeriac("sd2")
    assert [x.get(timeout=10) for x in waiting] == [0, 1, 2]


def test_second_sigterm_exits_at_once_and_requeues_everything(workers, celery_app, broker,
                                                             tmp_path):
    """Cold shutdown: the running task is abandoned but goes back to the queue at once (not
    after the liveness timeout), as do the prefetched ones; another worker runs them all."""
    marks = tmp_path / "marks"
    marks.mkdir()
    w = workers.celeriac("sd3", "-c", "1", "--prefetch-multiplier", "4")
    running = celery_app.signature("tests.mark").delay(str(marks), 3000)
    waiting = [celery_app.signature("tests.mark").delay(str(marks)) for _ in range(3)]
    deadline = time.time() + 5
    while time.time() < deadline and not inspect_node(celery_app, w.node, "active"):
        time.sleep(0.05)
    w.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    signalled = time.time()
    w.proc.send_signal(signal.SIGTERM)
    w.proc.wait(5)
    assert time.time() - signalled < 2
    assert w.proc.returncode == 1
    r = broker.client()
    assert r.hlen("unacked") == 0
    assert r.llen("celery") == 4
    peer = workers.celeriac("sd4", "-c", "4")
    assert [x.get(timeout=15) for x in [running, *waiting]] == [peer.node] * 4
    assert len(list(marks.iterdir())) == 4  # the abandoned run left no mark: none ran twice


def test_sigterm_while_waiting_returns_the_staged_message(workers, celery_app, broker):
    """An idle worker blocks on its queue, moving an arriving message into its staging list.
    If that happens just after the stop was asked for, the message must go back to the queue at
    exit, not wait in the staging list for a restart under the same name. The wait lasts up to
    100 ms, so a message sent 10 ms after SIGTERM mostly lands in it: three rounds, each on a
    queue of its own (a later round's worker must not take an earlier round's message)."""
    r = broker.client()
    late = []
    for i in range(3):
        queue = f"staged{i}"
        w = workers.celeriac(f"sd-staged{i}", "-c", "2", "-Q", queue)
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.01)
        late.append(celery_app.signature("tasks.add").apply_async((i, 10), queue=queue))
        w.proc.wait(15)
        assert w.proc.returncode == 0
        assert r.llen(f"celeriac.staging.{w.node}") == 0
        assert r.llen(queue) == 1
    assert r.hlen("unacked") == 0
    workers.celeriac("sd-staged-peer", "-Q", "staged0,staged1,staged2")
    assert [x.get(timeout=10) for x in late] == [10, 11, 12]
