"""tasks.inference_task(url, task_prompt) sent by an unchanged Python Celery client to a celeriac
worker running a tiny random-weight Florence-2 checkpoint: the result is the reference stack's
dict byte for byte (tests/data/florence-tiny/reference, written by transformers and Microsoft's
processor), for local paths, http URLs and gs:// objects; bad input fails with a precise Python exception and
the worker goes on serving."""
import functools
import http.server
import json
import shutil
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parents[1] / "data" / "florence-tiny"
MODEL = TINY / "native-safetensors-fp32"
sys.path.insert(0, str(TINY))
from reference_lookup import reference  # noqa: E402
TIMEOUT = 120


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "files"
    shutil.copytree(TINY / "images", root)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def infer(app, url, prompt):
    return app.send_task("tasks.inference_task", args=[str(url), prompt]).get(timeout=TIMEOUT)


def serve(folder):
    """An HTTP server on 127.0.0.1 for `folder`, in a thread; returns (server, base URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_reference_call_matches_the_reference_stack(celery_app, workers, files):
    """The seed's call: 3 beams, up to 1024 new tokens, a local path under FILES_BASE_PATH."""
    workers.celeriac("inference", "-c", "1", "--model", str(MODEL), "--files-root", str(files))
    pair, run, expected = reference("p00", "beam3_max1024")
    assert run["generate_kwargs"] == {"max_new_tokens": 1024, "num_beams": 3, "do_sample": False}
    result = infer(celery_app, files / pair["image"], pair["task"])
    assert json.dumps(result) == expected


def test_tasks_with_input_and_http_urls(celery_app, workers, files):
    workers.celeriac("inference", "-c", "2", "--model", str(MODEL), "--files-root", str(files),
                     "--max-new-tokens", "40", "--allow-private-urls")
    server, base = serve(files)
    try:
        pair, _, expected = reference("p05", "beam3")  # <OD> on image0
        assert json.dumps(infer(celery_app, files / pair["image"], pair["task"])) == expected
        assert json.dumps(infer(celery_app, f"{base}/{pair['image']}", pair["task"])) == expected
        # The reference worker hands its whole task_prompt to post_process_generation, which
        # then parses the text as pure text under that key: the same here.
        pair, run, _ = reference("p08", "beam3")  # <CAPTION_TO_PHRASE_GROUNDING>a red car ...
        text = run["text"].replace("<s>", "").replace("</s>", "")
        assert infer(celery_app, files / pair["image"], pair["task"]) == {pair["task"]: text}
        # Two at once on two executors: one model, one request at a time, both right.
        pair, _, expected = reference("p16", "beam3")  # <OD> on image1
        pending = [celery_app.send_task("tasks.inference_task",
                                        args=[str(files / pair["image"]), pair["task"]])
                   for _ in range(2)]
        assert [json.dumps(p.get(timeout=TIMEOUT)) for p in pending] == [expected] * 2
        with pytest.raises(FileNotFoundError, match="HTTP 404"):
            infer(celery_app, f"{base}/missing.png", "<OD>")
    finally:
        server.shutdown()


def test_bad_input_fails_precisely_and_the_worker_keeps_serving(celery_app, workers, files):
    w = workers.celeriac("inference", "-c", "1", "--model", str(MODEL), "--files-root",
                         str(files), "--max-new-tokens", "40")
    server, base = serve(files)
    try:
        cases = [
            (files / "missing.png", "<OD>", FileNotFoundError, "not found"),
            ("/etc/passwd", "<OD>", PermissionError, "outside the allowed folders"),
            (files / ".." / ".." / "etc" / "passwd", "<OD>", PermissionError, "outside"),
            (files / "broken.png", "<OD>", ValueError, "image"),
            (files / "image0.png", "<NOT_A_TASK>", ValueError, "NOT_A_TASK"),
            (files / "image0.png", "describe this", ValueError, "task token"),
            (files / "image0.png", "<OD>extra input", ValueError, "OD"),
            ("s3://bucket/image0.png", "<OD>", ValueError, "not supported"),
            ("gs://bucket-without-object", "<OD>", ValueError, "gs://BUCKET/OBJECT"),
            # Loopback is a private address: refused unless --allow-private-urls.
            (f"{base}/image0.png?token=secret", "<OD>", PermissionError, "private"),
        ]
        for url, prompt, error, words in cases:
            with pytest.raises(error, match=words):
                infer(celery_app, url, prompt)
        with pytest.raises(TypeError):
            celery_app.send_task("tasks.inference_task", args=[42, "<OD>"]).get(timeout=TIMEOUT)
    finally:
        server.shutdown()
    assert w.alive()
    assert "secret" not in w.output()  # query strings may hold credentials: never logged
    pair, _, expected = reference("p05", "beam3")
    assert json.dumps(infer(celery_app, files / pair["image"], pair["task"])) == expected


def test_process_pool_children_get_the_same_settings(celery_app, workers, files):
    workers.celeriac("inference", "-P", "processes", "-c", "1", "--model", str(MODEL),
                     "--files-root", str(files), "--max-new-tokens", "40")
    pair, _, expected = reference("p05", "beam3")
    assert json.dumps(infer(celery_app, files / pair["image"], pair["task"])) == expected
    with pytest.raises(PermissionError):
        infer(celery_app, "/etc/passwd", "<OD>")


def test_queued_requests_run_as_one_batch_with_the_single_results(celery_app, workers, files):
    """Requests that arrive while the model is busy run through it together; every result is
    still the reference's single-request one (varied images and tasks in one batch)."""
    w = workers.celeriac("inference", "-c", "4", "--model", str(MODEL), "--files-root",
                         str(files), "--max-new-tokens", "40")
    pairs = ["p02", "p05", "p15", "p16", "p19", "p20"]
    expected = [reference(p, "beam3") for p in pairs]
    pending = [celery_app.send_task("tasks.inference_task",
                                    args=[str(files / pair["image"]), pair["task"]])
               for pair, _, _ in expected]
    assert [json.dumps(p.get(timeout=TIMEOUT)) for p in pending] == [e for _, _, e in expected]
    sizes = [int(line.rsplit("size=", 1)[1]) for line in w.output().splitlines()
             if "event=inference-batch" in line]
    assert sum(sizes) == len(pairs) and max(sizes) > 1, sizes


class StorageEmulator(http.server.BaseHTTPRequestHandler):
    """Cloud Storage's JSON API media download, as an emulator serves it, for one folder."""
    folder = None
    bucket = "celeriac-test"
    seen = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path, _, query = self.path.partition("?")
        prefix = f"/storage/v1/b/{self.bucket}/o/"
        name = urllib.parse.unquote(path[len(prefix):]) if path.startswith(prefix) else ""
        self.seen.append((path, query, self.headers.get("Authorization")))
        target = self.folder / name if name and "/" not in name else None
        if query != "alt=media" or target is None or not target.is_file():
            self.send_response(404)
            self.end_headers()
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_gs_objects_through_a_storage_emulator(celery_app, workers, files):
    """gs://BUCKET/OBJECT is read through the JSON API at STORAGE_EMULATOR_HOST, the variable
    Google's client libraries honour; the emulator is on loopback, which is allowed because the
    operator chose it (only the object names are the client's)."""
    handler = type("Handler", (StorageEmulator,), {"folder": files, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        workers.celeriac("inference", "-c", "1", "--model", str(MODEL), "--max-new-tokens",
                         "40", env={"STORAGE_EMULATOR_HOST": host})
        pair, _, expected = reference("p05", "beam3")
        url = f"gs://{StorageEmulator.bucket}/{pair['image']}"
        assert json.dumps(infer(celery_app, url, pair["task"])) == expected
        assert handler.seen[-1] == (f"/storage/v1/b/celeriac-test/o/{pair['image']}",
                                    "alt=media", None)  # an emulator gets no token
        with pytest.raises(FileNotFoundError, match="HTTP 404"):
            infer(celery_app, f"gs://{StorageEmulator.bucket}/missing.png", "<OD>")
    finally:
        server.shutdown()
