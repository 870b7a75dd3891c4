"""Redis goes away and comes back: the worker neither crashes nor spins while it is gone
(reconnects with backoff and jitter), and results of tasks that finished during the outage are
stored once Redis is back."""
import os
import time
from pathlib import Path

from celery import Celery

from conftest import Process, celeriac_bin

from chaos import RedisServer  # tests/chaos, on the path through conftest


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_worker_survives_a_redis_restart(tmp_path):
    server = RedisServer(tmp_path)
    worker = Process([celeriac_bin(), "worker", "-b", server.url(0), "--result-backend",
                      server.url(1), "--test-tasks", "-n", "outage@interop", "-c", "2"],
                     "outage", tmp_path)
    app = Celery("outage", broker=server.url(0), backend=server.url(1))
    try:
        marks = tmp_path / "marks"
        marks.mkdir()
        assert app.signature("tests.echo").delay(1).get(timeout=15) == {"args": [1], "kwargs": {}}
        # Finish while Redis is down: 1.5 s of work, Redis gone after 0.5 s for 3 s.
        during = [app.signature("tests.mark").delay(str(marks), 1500) for _ in range(2)]
        time.sleep(0.5)
        server.kill()
        cpu_before = cpu_seconds(worker.proc.pid)
        time.sleep(3)
        cpu_during = cpu_seconds(worker.proc.pid) - cpu_before
        assert worker.alive(), worker.output()
        assert cpu_during < 0.3, f"worker busy while Redis was down: {cpu_during:.2f} s CPU"
        assert len(os.listdir(marks)) == 2  # both ran to the end during the outage
        server.start()
        assert [d.get(timeout=30) for d in during] == ["outage@interop"] * 2
        assert app.signature("tests.echo").delay(2).get(timeout=15) == {"args": [2], "kwargs": {}}
        assert len(os.listdir(marks)) == 2  # stored once, not run again
        assert "backend-unreachable" in worker.output() or "broker-unreachable" in worker.output()
    finally:
        worker.stop()
        app.close()
        server.kill()
