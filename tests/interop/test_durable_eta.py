"""ETA/countdown tasks are durable: a delayed task survives its worker's restart (warm shutdown
or SIGKILL) and runs exactly once, at or after its time."""
import os
import signal
import time

from conftest import wait_inspect


def check_ran_once_after(result, eta, marks, timeout=30):
    assert result.get(timeout=timeout)
    runs = [n for n in os.listdir(marks) if n.startswith(result.id)]
    assert len(runs) == 1, runs
    assert result.date_done.timestamp() >= eta - 0.05  # clocks: same machine


def test_countdown_survives_warm_shutdown(workers, celery_app, tmp_path):
    first = workers.celeriac("eta1")
    eta = time.time() + 4
    delayed = celery_app.signature("tests.mark").apply_async((str(tmp_path),), countdown=4)
    wait_inspect(celery_app, first.node, "scheduled", 1)
    assert first.stop(signal.SIGTERM) == 0  # the held ETA task goes back to the queue
    workers.celeriac("eta2")
    check_ran_once_after(delayed, eta, tmp_path)


def test_countdown_survives_sigkill(workers, celery_app, tmp_path):
    first = workers.celeriac("eta3")
    eta = time.time() + 4
    delayed = celery_app.signature("tests.mark").apply_async((str(tmp_path),), countdown=4)
    wait_inspect(celery_app, first.node, "scheduled", 1)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    workers.celeriac("eta3")  # restarted under the same name: restores what it held at once
    check_ran_once_after(delayed, eta, tmp_path)
