"""Acceptance 5: payloads round-trip; priorities; several queues."""
import time


def test_kwargs_nested_unicode_and_1mb(workers, celery_app):
    workers.celeriac("cp1")
    nested = {"a": [1, 2.5, None, True, {"b": ["c", {"d": []}]}], "e": {}}
    text = "héllo wörld — 日本語 🎉🐍 \U0001F600 \u0000 end"
    big = "x" * (1024 * 1024)
    r = celery_app.signature("tests.echo").delay(nested, text, k=text, n=nested)
    assert r.get(timeout=10) == {"args": [nested, text], "kwargs": {"k": text, "n": nested}}
    r = celery_app.signature("tests.echo").delay(big)
    assert r.get(timeout=20) == {"args": [big], "kwargs": {}}


def test_higher_priority_runs_first(workers, celery_app, broker):
    # Both wait before the worker starts; on Redis priority 0 is served before 9 (kombu order).
    low = celery_app.signature("tests.echo").apply_async(("low",), priority=9)
    high = celery_app.signature("tests.echo").apply_async(("high",), priority=0)
    workers.celeriac("cp2", "-c", "1", "--prefetch-multiplier", "1")
    assert high.get(timeout=10)["args"] == ["high"]
    assert low.get(timeout=10)["args"] == ["low"]
    assert high.date_done < low.date_done


def test_consumes_several_queues_fairly(workers, celery_app):
    # A backlog on `a` and one task on `b`, all waiting before the worker starts: round robin
    # over queues (kombu's default) serves `b` long before `a` is drained.
    backlog = [celery_app.signature("tasks.add").apply_async((i, 0), queue="a") for i in range(100)]
    on_b = celery_app.signature("tasks.add").apply_async((5, 5), queue="b")
    workers.celeriac("cp3", "-Q", "a,b", "-c", "1", "--prefetch-multiplier", "1")
    assert on_b.get(timeout=10) == 10
    assert [r.get(timeout=20) for r in backlog] == list(range(100))
    later_a = sum(1 for r in backlog if r.date_done > on_b.date_done)
    assert later_a >= 90, later_a
