"""Run by a given Python (e.g. the Celery 5.4.0 venv): the reference client's steps against a
running worker. Prints one JSON object with what it saw."""
import json
import sys

from celery import Celery, __version__

broker, backend, node = sys.argv[1:4]
app = Celery("client-script", broker=broker, backend=backend)
active = app.control.inspect(timeout=1.0).active() or {}
result = app.signature("tasks.add").delay(4, 6)
value = result.wait(timeout=15)
print(json.dumps({"celery": __version__, "active_nodes": sorted(active), "add": value,
                  "ping": app.control.ping(destination=[node], timeout=1.0)}))
