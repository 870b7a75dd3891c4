"""`celeriac app`, the HTTP gateway, in front of a real Redis and a celeriac worker running the tiny
random-weight Florence-2 checkpoint: an upload through the page's form comes back on the event
stream as the reference stack's result dict, a Python Celery client reads the same result by its
id, bad requests get precise 4xx answers without reaching the queue, readiness follows Redis and
1,000 event streams on one task all receive its result. Standard-library HTTP only."""
import asyncio
import http.client
import json
import re
import resource
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import Process, celeriac_bin, wait_for_node
from chaos import RedisServer

TINY = Path(__file__).resolve().parents[1] / "data" / "florence-tiny"
MODEL = TINY / "native-safetensors-fp32"
sys.path.insert(0, str(TINY))
from reference_lookup import reference  # noqa: E402
TIMEOUT = 120


class Gateway:
    """A `celeriac app` process on a free port (it logs the port it bound)."""

    def __init__(self, broker_url, backend_url, uploads, log_dir, *args):
        self.proc = Process([celeriac_bin(), "app", "-p", "0", "-b", broker_url, "--result-backend",
                             backend_url, "--uploads", str(uploads), "-l", "debug", *args], "app", log_dir)
        deadline = time.time() + 15
        while time.time() < deadline:
            found = re.search(r"event=app-ready listen=[\d.]+:(\d+)", self.proc.output())
            if found:
                self.port = int(found.group(1))
                return
            assert self.proc.alive(), self.proc.output()
            time.sleep(0.05)
        raise AssertionError("the app did not start:\n" + self.proc.output())

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, json.loads(data) if ctype.startswith("application/json") else data

    def submit_form(self, fields, image=None, path="/api/tasks"):
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        if image is not None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                         f'filename="upload.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                         + image + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def submit_json(self, payload):
        return self.request("POST", "/api/tasks", json.dumps(payload),
                            {"Content-Type": "application/json"})

    def events(self, task_id):
        """The `state` events of a task's stream until the server closes it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        conn.request("GET", f"/api/tasks/{task_id}/events")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        states = []
        for line in resp:
            if line.startswith(b"data: "):
                states.append(json.loads(line[6:]))
        conn.close()
        return states

    def metrics(self):
        status, text = self.request("GET", "/metrics")
        assert status == 200
        return text.decode()


@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def gateway(broker, uploads, tmp_path):
    apps = []

    def start(*args):
        apps.append(Gateway(broker.url(0), broker.url(1), uploads, tmp_path, *args))
        return apps[-1]

    yield start
    for a in apps:
        a.proc.stop()


def test_an_upload_comes_back_as_the_reference_result(celery_app, workers, gateway, uploads):
    workers.celeriac("inference", "-c", "1", "--model", str(MODEL), "--files-root", str(uploads),
                     "--max-new-tokens", "40")
    app = gateway()
    status, page = app.request("GET", "/")
    assert status == 200 and b"<form" in page and b"/api/tasks" in page
    pair, _, expected = reference("p05", "beam3")  # <OD> on image0
    image = (TINY / "images" / pair["image"]).read_bytes()
    status, sent = app.submit_form({"task_prompt": pair["task"]}, image)
    assert status == 202, sent
    assert sent["state"] == "PENDING" and sent["task_prompt"] == pair["task"]
    # Content-addressed: the SHA-256 of the bytes names the stored file the worker reads.
    stored = Path(sent["url"])
    assert stored.parent == uploads and stored.read_bytes() == image
    assert stored.name == __import__("hashlib").sha256(image).hexdigest() + ".png"

    states = app.events(sent["task_id"])
    assert states[-1]["state"] == "SUCCESS", states
    assert json.dumps(states[-1]["result"]) == expected
    assert [s["state"] for s in states[:-1]] in ([], ["PENDING"], ["PENDING", "STARTED"], ["STARTED"])
    status, polled = app.request("GET", sent["status_url"])
    assert status == 200 and polled["state"] == "SUCCESS" and json.dumps(polled["result"]) == expected
    # Any Celery client reads the same result by the id.
    assert json.dumps(celery_app.AsyncResult(sent["task_id"]).get(timeout=TIMEOUT)) == expected
    # A stream opened after the end gives the result at once and closes.
    assert [s["state"] for s in app.events(sent["task_id"])] == ["SUCCESS"]

    # The same bytes again: the same file; the upload-only route says it existed.
    status, again = app.request("POST", "/api/uploads", image, {"Content-Type": "image/png"})
    assert status == 200 and again["url"] == sent["url"] and again["sha256"] == stored.stem
    assert len(list(uploads.iterdir())) == 1
    metrics = app.metrics()
    assert 'celeriac_app_requests_total{route="/api/tasks",status="202"} 1' in metrics
    assert 'celeriac_app_tasks_submitted_total{task="<OD>"} 1' in metrics
    assert 'celeriac_app_uploads_total{stored="existing"} 1' in metrics
    assert "celeriac_app_result_watch_up 1" in metrics


def test_urls_and_task_inputs_as_json(workers, gateway, uploads, tmp_path):
    import test_inference_task as inference  # its loopback file server
    files = tmp_path / "files"
    shutil.copytree(TINY / "images", files)
    workers.celeriac("inference", "-c", "1", "--model", str(MODEL), "--max-new-tokens", "40",
                     "--allow-private-urls")
    app = gateway()
    server, base = inference.serve(files)
    try:
        pair, run, _ = reference("p08", "beam3")  # <CAPTION_TO_PHRASE_GROUNDING>a red car ...
        token, text = pair["task"].split(">", 1)
        status, sent = app.submit_json({"url": f"{base}/{pair['image']}", "task_prompt": token + ">",
                                        "text": text})
        assert status == 202, sent
        assert sent["task_prompt"] == pair["task"]  # sent as the reference takes it: one string
        final = app.events(sent["task_id"])[-1]
        generated = run["text"].replace("<s>", "").replace("</s>", "")
        assert final["state"] == "SUCCESS" and final["result"] == {pair["task"]: generated}
        # A missing object fails on the worker: the stream ends with the worker's exception.
        status, sent = app.submit_json({"url": f"{base}/missing.png", "task_prompt": "<OD>"})
        final = app.events(sent["task_id"])[-1]
        assert final["state"] == "FAILURE"
        assert final["error"]["type"] == "FileNotFoundError" and "404" in final["error"]["message"]
    finally:
        server.shutdown()


def test_bad_requests_are_refused_before_the_queue(broker, gateway, uploads):
    app = gateway("--max-upload-bytes", "2000")
    png = (TINY / "images" / "image0.png").read_bytes()
    small_png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    cases = [
        (app.submit_form({"task_prompt": "<OD>"}, b"<html>hello</html>"), 415, "not a JPEG, PNG"),
        (app.submit_form({"task_prompt": "<OD>"}, png), 413, "limit of 2000"),
        (app.submit_form({"task_prompt": "<NOT_A_TASK>"}, small_png), 400, "unknown task prompt"),
        (app.submit_form({"task_prompt": "<CAPTION_TO_PHRASE_GROUNDING>"}, small_png), 400, "input"),
        (app.submit_form({"task_prompt": "<REGION_TO_CATEGORY>", "text": "a car"}, small_png), 400,
         "loc"),
        (app.submit_form({"task_prompt": "<OD>"}), 400, "no image"),
        (app.submit_json({"url": "/etc/passwd", "task_prompt": "<OD>"}), 400, "http://, https:// or gs://"),
        (app.submit_json({"url": "file:///etc/passwd"}), 400, "upload files instead"),
        (app.submit_json({"url": 42}), 400, "no image"),
        (app.request("POST", "/api/tasks", "{not json", {"Content-Type": "application/json"}), 400,
         "not valid JSON"),
        (app.request("POST", "/api/tasks", "x", {"Content-Type": "text/plain"}), 415, "multipart"),
        (app.request("POST", "/api/tasks", b"--b\r\nbroken", {"Content-Type":
                                                              "multipart/form-data; boundary=b"}),
         400, "multipart"),
        (app.request("GET", "/api/tasks/..%2Fetc"), 400, "not a task id"),
        (app.request("PUT", "/api/tasks/abc"), 405, "not allowed"),
        (app.request("GET", "/nothing-here"), 404, "no such resource"),
        (app.request("POST", "/api/uploads", b"x" * 70000, {"Content-Type": "image/png"}), 413,
         "limit"),
    ]
    for (status, body), want_status, words in cases:
        assert status == want_status, (body, want_status)
        assert words in body["error"], (body, words)
    assert broker.client().llen("celery") == 0  # nothing reached the queue
    assert list(uploads.iterdir()) == []        # nor the upload folder
    assert app.request("GET", "/healthz") == (200, {"status": "ok"})
    assert app.proc.alive()


def test_readiness_and_event_streams_survive_a_redis_restart(tmp_path, uploads):
    (tmp_path / "own-redis").mkdir()
    redis = RedisServer(tmp_path / "own-redis", aof=True)
    app = worker = None
    try:
        app = Gateway(redis.url(0), redis.url(1), uploads, tmp_path)
        status, ready = app.request("GET", "/readyz")
        assert status == 200 and ready["checks"] == {"broker": "ok", "backend": "ok",
                                                     "result_watch": "ok"}
        task_id = str(uuid.uuid4())
        collected = []
        import threading
        reader = threading.Thread(target=lambda: collected.extend(app.events(task_id)))
        reader.start()
        time.sleep(0.5)
        redis.kill()
        status, ready = app.request("GET", "/readyz")
        assert status == 503 and ready["checks"]["broker"] == "unavailable", ready
        assert app.request("GET", "/healthz")[0] == 200
        status, body = app.submit_json({"url": "https://example.com/a.png", "task_prompt": "<OD>"})
        assert status == 503 and "unavailable" in body["error"]
        redis.start()
        deadline = time.time() + 10
        while app.request("GET", "/readyz")[0] != 200:
            assert time.time() < deadline, "the app did not become ready again"
            time.sleep(0.2)
        # The stream opened before the restart still gets the result.
        from celery import Celery
        client = Celery("restart-client", broker=redis.url(0), backend=redis.url(1))
        worker = Process([celeriac_bin(), "worker", "-b", redis.url(0), "--result-backend",
                          redis.url(1), "-n", "restart@interop", "-c", "1"], "worker", tmp_path)
        wait_for_node(client, "restart@interop", proc=worker)
        client.send_task("tasks.add", args=[2, 3], task_id=task_id)
        reader.join(TIMEOUT)
        assert collected and collected[-1] == {"task_id": task_id, "state": "SUCCESS", "result": 5,
                                               "date_done": collected[-1]["date_done"]}
        client.close()
    finally:
        for p in (worker, app.proc if app else None):
            if p:
                p.stop()
        redis.stop()


async def _stream_until_success(port, task_id, opened):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/tasks/{task_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    seen = b""
    while b'"state":"PENDING"' not in seen:
        seen += await reader.read(4096)
    opened.append(1)
    while b'"state":"SUCCESS"' not in seen:
        chunk = await reader.read(4096)
        if not chunk:
            break
        seen += chunk
    writer.close()
    return seen


def test_a_thousand_event_streams_all_get_the_result(celery_app, workers, gateway):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    workers.celeriac("adder", "-c", "1")
    app = gateway()
    task_id = str(uuid.uuid4())
    clients = 1000

    async def run():
        opened = []
        streams = [asyncio.create_task(_stream_until_success(app.port, task_id, opened))
                   for _ in range(clients)]
        while len(opened) < clients:
            await asyncio.sleep(0.05)
        assert f"celeriac_app_event_streams {clients}" in app.metrics()
        started = time.time()
        celery_app.send_task("tasks.add", args=[20, 22], task_id=task_id)
        seen = await asyncio.wait_for(asyncio.gather(*streams), TIMEOUT)
        return seen, time.time() - started

    seen, elapsed = asyncio.run(run())
    assert all(b'"result":42' in s for s in seen)
    print(f"{clients} streams received the result {elapsed:.2f} s after the task was sent")
    deadline = time.time() + 10
    while "celeriac_app_event_streams 0" not in app.metrics():
        assert time.time() < deadline, "streams were not closed"
        time.sleep(0.1)
