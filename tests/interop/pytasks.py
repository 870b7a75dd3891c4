"""The Python side of the interop tests: a Celery app with the same task names and semantics
as celeriac's built-in and test tasks (docs/cli-contract.md)."""
import builtins
import os
import uuid

from celery import Celery

app = Celery("pytasks", broker=os.environ.get("INTEROP_BROKER", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("INTEROP_BACKEND", "redis://127.0.0.1:6379/1"))
app.conf.worker_prefetch_multiplier = 1
app.conf.worker_hijack_root_logger = False
# Tests that kill workers set these: kombu's restore timing and acks_late.
if os.environ.get("INTEROP_TRANSPORT_OPTIONS"):
    import json
    app.conf.broker_transport_options = json.loads(os.environ["INTEROP_TRANSPORT_OPTIONS"])
app.conf.task_acks_late = os.environ.get("INTEROP_ACKS_LATE") == "1"


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.sleep")
def sleep(seconds):
    import time
    time.sleep(seconds)
    return seconds


@app.task(name="tasks.tsum")
def tsum(numbers):
    return sum(numbers)


@app.task(name="tests.echo")
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="tests.fail")
def fail(message, exc_type="ValueError"):
    raise getattr(builtins, exc_type, ValueError)(message)


@app.task(name="tests.flaky", bind=True, max_retries=3, default_retry_delay=1)
def flaky(self, fail_times):
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError("try again"), countdown=1)
    return self.request.retries


@app.task(name="tests.mark", bind=True)
def mark(self, dir, ms=0):
    import time
    time.sleep(ms / 1000)
    path = os.path.join(dir, f"{self.request.id}.{uuid.uuid4()}")
    with open(path, "x") as f:
        f.write(self.request.hostname + "\n")
    return self.request.hostname


@app.task(name="tests.abort")
def abort():
    os.abort()


@app.task(name="tests.spin")
def spin(seconds):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def _cancellable(seconds):
    import time
    from celery.exceptions import SoftTimeLimitExceeded
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "soft time limit"
    return "not cancelled"


@app.task(name="tests.cancellable")
def cancellable(seconds):
    return _cancellable(seconds)


@app.task(name="tests.limited", time_limit=2, soft_time_limit=0.5)
def limited(seconds):
    return _cancellable(seconds)
