"""A celeriac worker killed with SIGKILL loses nothing: a live worker sees its liveness key
expire and puts back everything it held (running, prefetched, ETA) within seconds, not after
kombu's one-hour visibility timeout."""
import signal
import time


def test_killed_worker_tasks_are_recovered_by_a_peer(workers, celery_app, broker):
    victim = workers.celeriac("rk1", "-c", "2", "--prefetch-multiplier", "2")
    running = [celery_app.signature("tasks.sleep").delay(3) for _ in range(2)]
    waiting = [celery_app.signature("tasks.add").delay(i, 1) for i in range(2)]
    later = celery_app.signature("tasks.add").apply_async((10, 1), countdown=2)
    deadline = time.time() + 5
    while time.time() < deadline:
        active = (celery_app.control.inspect(destination=[victim.node], timeout=0.5).active() or {})
        if len(active.get(victim.node, [])) == 2:
            break
    r = broker.client()
    assert r.scard("celeriac.held." + victim.node) >= 3
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(5)
    killed_at = time.time()
    workers.celeriac("rk2", "-c", "4")
    assert [x.get(timeout=30) for x in running] == [3, 3]
    assert [x.get(timeout=30) for x in waiting] == [1, 2]
    assert later.get(timeout=30) == 11
    assert time.time() - killed_at < 20  # heartbeat expiry (6 s) + sweep (5 s) + 3 s tasks
    assert r.hlen("unacked") == 0
    assert r.scard("celeriac.held." + victim.node) == 0
