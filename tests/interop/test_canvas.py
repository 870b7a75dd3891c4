"""Acceptance 8: canvas sent from Python runs on celeriac and gives what Python gives."""
import pytest
from celery import chain, chord, group


def run_canvas(app):
    add = app.signature("tasks.add")
    tsum = app.signature("tasks.tsum")
    out = {}
    out["chain"] = (add.clone((2, 2)) | add.clone((4,)))().get(timeout=15)
    out["chain3"] = chain(add.clone((1, 1)), add.clone((1,)), add.clone((1,)))().get(timeout=15)
    out["group"] = group(add.clone((i, i)) for i in range(5))().get(timeout=15)
    out["chord"] = chord([add.clone((i, i)) for i in range(4)])(tsum.clone()).get(timeout=15)
    linked = add.clone((1, 2)).apply_async(link=add.clone((10,)))
    out["link"] = linked.get(timeout=15)
    out["link_child"] = linked.children[0].get(timeout=15) if linked.children else None
    failing = app.signature("tests.fail").clone(("boom",))
    errback = app.signature("tests.echo").clone(("errback",))
    failed = failing.apply_async(link_error=errback)
    with pytest.raises(ValueError):
        failed.get(timeout=15, propagate=True)
    out["link_error_state"] = failed.state
    return out, failed.id


def test_canvas_matches_python_worker(workers, celery_app, broker):
    py = workers.python("pyc", "-P", "threads", "-c", "4")
    expected, _ = run_canvas(celery_app)
    py.stop()
    workers.celeriac("cc1", "-c", "4")
    got, failed_id = run_canvas(celery_app)
    assert got == expected
    assert got["chain"] == 8 and got["chord"] == 12 and got["link_child"] == 13
    # The errback ran on celeriac with the failed task's id prepended.
    import json
    metas = [json.loads(broker.client(1).get(k)) for k in broker.client(1).keys("celery-task-meta-*")]
    echoed = [m["result"] for m in metas
              if m["status"] == "SUCCESS" and isinstance(m["result"], dict)
              and m["result"].get("args") == [failed_id, "errback"]]
    assert echoed, "link_error callback did not run with the failed task id"
