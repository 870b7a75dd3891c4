"""Acceptance 4: retries and countdown."""
import time

import pytest


def test_fails_twice_then_succeeds(workers, celery_app, broker):
    workers.celeriac("cr1")
    start = time.time()
    r = celery_app.signature("tests.flaky").delay(2)
    states = set()
    while not r.ready() and time.time() - start < 15:
        states.add(r.state)
        time.sleep(0.05)
    assert r.get(timeout=15) == 2  # the task returns self.request.retries
    assert "RETRY" in states
    took = time.time() - start
    assert 2 * 0.8 <= took <= 2 * 1.2 + 0.5


def test_always_failing_gives_failure_after_three_retries(workers, celery_app):
    workers.celeriac("cr2")
    start = time.time()
    r = celery_app.signature("tests.flaky").delay(100)
    with pytest.raises(RuntimeError, match="try again"):
        r.get(timeout=20)
    took = time.time() - start
    assert r.state == "FAILURE"
    assert 3 * 0.8 <= took <= 3 * 1.2 + 0.5


def test_countdown_within_20_percent(workers, celery_app):
    workers.celeriac("cr3")
    for countdown in (1.0, 2.0):
        start = time.time()
        r = celery_app.signature("tasks.add").apply_async((1, 1), countdown=countdown)
        assert r.get(timeout=10) == 2
        took = time.time() - start
        assert countdown <= took + 0.01 and took <= countdown * 1.2, took
