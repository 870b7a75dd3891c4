"""Acceptance 3: a C++ task that throws, seen from the Python client."""
import pytest


def test_exception_type_message_state_and_traceback(workers, celery_app):
    workers.celeriac("cf1")
    r = celery_app.signature("tests.fail").delay("boom")
    with pytest.raises(Exception) as info:
        r.get(timeout=10)
    assert type(info.value).__name__ == "ValueError"
    assert isinstance(info.value, ValueError)  # builtins resolve to the real class
    assert str(info.value) == "boom"
    assert r.state == "FAILURE"
    assert isinstance(r.traceback, str) and "ValueError: boom" in r.traceback


def test_custom_exception_type(workers, celery_app):
    workers.celeriac("cf2")
    r = celery_app.signature("tests.fail").delay("no such key", exc_type="KeyError")
    with pytest.raises(KeyError):
        r.get(timeout=10)
    r = celery_app.signature("tests.fail").delay("custom", exc_type="ModelError")
    with pytest.raises(Exception) as info:
        r.get(timeout=10)
    assert type(info.value).__name__ == "ModelError"
