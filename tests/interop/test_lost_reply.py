"""A reservation whose reply never reaches the worker. Redis stalls (DEBUG SLEEP) past the
worker's socket timeout just as the consumer asks for the next message; the worker gives the
connection up, and Redis, once awake, still runs the reserve script it had received: the message
is then recorded as held by this live worker, which never learnt of it. No peer restores a live
worker's messages, so it would wait for a restart; the worker must put it back itself once it
reconnects."""
import time

import redis
from celery import Celery

from conftest import Process, celeriac_bin

from chaos import RedisServer  # tests/chaos, on the path through conftest

NODE = "lost@interop"


def test_a_reservation_whose_reply_was_lost_is_requeued(tmp_path):
    server = RedisServer(tmp_path, aof=False, extra_args=["--enable-debug-command", "local"])
    worker = Process([celeriac_bin(), "worker", "-b", server.url(0), "--result-backend",
                      server.url(1), "--test-tasks", "-n", NODE, "-c", "1",
                      "--prefetch-multiplier", "1", "--broker-socket-timeout", "1"],
                     "lost", tmp_path)
    app = Celery("lost", broker=server.url(0), backend=server.url(1))
    client = redis.Redis(port=server.port)
    try:
        assert app.signature("tests.echo").delay(0).get(timeout=15) == {"args": [0], "kwargs": {}}
        first = app.signature("tasks.sleep").delay(1.0)
        deadline = time.time() + 10
        while not any(client.hvals(f"celeriac.running.{NODE}")):  # the first one has started
            assert time.time() < deadline, worker.output()
            time.sleep(0.01)
        started = time.time()
        # The only slot is taken: this one waits in the queue until the first finishes.
        second = app.signature("tests.echo").delay(2)
        # Asleep from 0.7 s to 3.2 s: the first ends at 1.0 s, the consumer's reserve then waits
        # past its 1 s timeout and is given up, and runs when Redis wakes.
        time.sleep(max(0.0, started + 0.7 - time.time()))
        client.execute_command("DEBUG", "SLEEP", "2.5")
        assert first.get(timeout=30) == 1.0
        assert second.get(timeout=30) == {"args": [2], "kwargs": {}}, worker.output()
        assert worker.alive(), worker.output()
        assert "event=held-requeued count=1" in worker.output()
        assert client.scard(f"celeriac.held.{NODE}") == 0
    finally:
        worker.stop()
        app.close()
        server.kill()
