"""What bench/queue and bench/pool both need: a private redis-server, Celery task messages written
straight into the broker list, and process-group stops for the workers they start. Imported by
path (the bench scripts are run as files, not as a package)."""
import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import redis


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task_message(task, args):
    """`task(*args)` exactly as Celery 5's client writes it (protocol 2, kombu envelope)."""
    tid = str(uuid.uuid4())
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None,
                                  "chord": None}])
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode(), "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": tid, "shadow": None, "eta": None,
                    "expires": None, "group": None, "group_index": None, "retries": 0,
                    "timelimit": [None, None], "root_id": tid, "parent_id": None,
                    "argsrepr": repr(tuple(args)), "kwargsrepr": "{}", "origin": "gen0@bench",
                    "ignore_result": False},
        "properties": {"correlation_id": tid, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "celery"},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())}})


def enqueue(r, n):
    """N tasks.add(i, 1), pipelined in batches so the client never holds all N at once."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.lpush("celery", task_message("tasks.add", [i, 1]))
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


class RedisBench:
    """One throwaway redis-server on a free loopback port (no persistence: nothing here needs to
    survive it); `r` is the broker db 0, `rb` the result backend db 1."""

    def __init__(self):
        self.port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.rb = redis.Redis(port=self.port, db=1)

    def stop(self, p):
        """Workers are started in their own session, so prefork/process-pool children go too."""
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def close(self):
        self.redis.kill()
        self.redis.wait()
