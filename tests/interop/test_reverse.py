"""Acceptance 2: `celeriac call` (the C++ client) against a real Python Celery worker."""
import time

from conftest import run_cli


def test_call_add_on_python_worker(workers, broker):
    workers.python("py1", "-P", "solo")
    out = run_cli("call", "tasks.add", "4", "6", "--wait", broker=broker)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"


def test_kwargs_queue_and_countdown(workers, broker):
    workers.python("py2", "-P", "solo", "-Q", "other")
    out = run_cli("call", "tests.echo", "1", "x", "--kwargs", '{"k": [1, {"n": null}]}',
                  "-Q", "other", "--wait", broker=broker)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"args":[1,"x"],"kwargs":{"k":[1,{"n":null}]}}'
    start = time.time()
    out = run_cli("call", "tasks.add", "1", "2", "-Q", "other", "--countdown", "2", "--wait",
                  broker=broker)
    took = time.time() - start
    assert out.stdout.strip() == "3"
    assert 2.0 <= took <= 2.0 * 1.2 + 1.0  # the Python worker's own ETA granularity


def test_python_exception_arrives_in_cpp(workers, broker):
    workers.python("py3", "-P", "solo")
    out = run_cli("call", "tests.fail", "boom", "--wait", broker=broker)
    assert out.returncode == 1
    assert out.stderr.strip() == "ValueError: boom"
    out = run_cli("call", "tests.fail", "missing", "--kwargs", '{"exc_type": "KeyError"}',
                  "--wait", broker=broker)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("KeyError:")
    assert "missing" in out.stderr
