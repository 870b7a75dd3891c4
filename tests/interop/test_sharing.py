"""Acceptance 7: result expiry; a Python and a celeriac worker share one queue."""
import collections
import os


def test_result_keys_carry_the_expiry(workers, celery_app, broker):
    workers.celeriac("cs1")
    r = celery_app.signature("tasks.add").delay(1, 1)
    r.get(timeout=10)
    ttl = broker.client(1).ttl(f"celery-task-meta-{r.id}")
    assert 86000 < ttl <= 86400


def test_result_expires_flag(workers, celery_app, broker):
    workers.celeriac("cs2", "--result-expires", "600")
    r = celery_app.signature("tasks.add").delay(1, 1)
    r.get(timeout=10)
    assert 0 < broker.client(1).ttl(f"celery-task-meta-{r.id}") <= 600


def test_python_and_celeriac_share_a_queue_without_duplicates(workers, celery_app, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    workers.python("pys", "-P", "threads", "-c", "2")
    workers.celeriac("cs3", "-c", "2")
    results = [celery_app.signature("tests.mark").delay(str(marks)) for _ in range(200)]
    ran_on = collections.Counter(r.get(timeout=60) for r in results)
    assert all(r.state == "SUCCESS" for r in results)
    per_task = collections.Counter(name.split(".")[0] for name in os.listdir(marks))
    assert len(per_task) == 200
    assert max(per_task.values()) == 1, "a task ran twice"
    assert set(ran_on) == {"pys@interop", "cs3@interop"}, ran_on
