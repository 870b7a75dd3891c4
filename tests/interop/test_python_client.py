"""Acceptance 1: the reference's Python client, unchanged, against `celeriac worker`."""
import json
import subprocess
from pathlib import Path

from conftest import inspect_node

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_inspect_and_add_with_latest_celery(workers, celery_app):
    w = workers.celeriac("cw1", "-c", "2")
    active = celery_app.control.inspect(timeout=1.0).active()
    assert w.node in active
    assert active[w.node] == []
    assert celery_app.signature("tasks.add").delay(4, 6).wait(timeout=10) == 10
    registered = inspect_node(celery_app, w.node, "registered")
    assert "tasks.add" in registered
    stats = inspect_node(celery_app, w.node, "stats")
    assert stats["pool"]["max-concurrency"] == 2
    assert stats["total"]["tasks.add"] == 1
    assert celery_app.control.ping(destination=[w.node], timeout=1.0) == [{w.node: {"ok": "pong"}}]


def test_active_shows_a_running_task(workers, celery_app):
    w = workers.celeriac("cw2", "-c", "1")
    r = celery_app.signature("tasks.sleep").delay(1.5)
    import time
    deadline = time.time() + 5
    running = []
    while time.time() < deadline and not running:
        running = (celery_app.control.inspect(timeout=1.0).active() or {}).get(w.node, [])
    assert [t["id"] for t in running] == [r.id]
    assert running[0]["name"] == "tasks.sleep"
    assert running[0]["args"] == [1.5]
    assert r.get(timeout=10) == 1.5


def test_celery_5_4_client(workers, broker):
    w = workers.celeriac("cw54", "-c", "2")
    python = REPO / ".venv-c54" / "bin" / "python"
    assert python.exists(), "run scripts/setup-venv.sh to create .venv-c54 (Celery 5.4.0)"
    out = subprocess.run([str(python), str(HERE / "client_script.py"), broker.url(0),
                          broker.url(1), w.node], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["celery"] == "5.4.0"
    assert w.node in seen["active_nodes"]
    assert seen["add"] == 10
    assert seen["ping"] == [{w.node: {"ok": "pong"}}]
