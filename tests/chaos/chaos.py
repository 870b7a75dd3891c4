#!/usr/bin/env python3
"""Chaos test (issue 3, acceptance 1): tasks of 5-50 ms on two celeriac workers; SIGKILL a worker
at random moments (each restarted under the same name, as a supervisor would); restart
redis-server once (SIGKILL; AOF on with fsync always, so nothing it acknowledged is lost). At the
end every task must have a SUCCESS result: prints `lost` (must be 0) and `duplicates` (tasks that
ran to completion more than once: at-least-once delivery means a task whose worker died after
running it, before its ack, runs again).

    .venv/bin/python tests/chaos/chaos.py                 # full size: 5,000 tasks, 10 kills
    .venv/bin/python tests/chaos/chaos.py --tasks 600 --kills 3   # what CI runs (test_chaos.py)

Everything runs on 127.0.0.1: a private redis-server on a free port, workers from CELERIAC_BIN
(default build/celeriac), tasks sent with the real Celery client.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port; with `aof`, restartable on the same port
    and data directory without losing anything it acknowledged (fsync always)."""

    def __init__(self, workdir, aof=True, extra_args=()):
        self.port = free_port()
        self.dir = workdir
        self.aof = aof
        self.extra_args = list(extra_args)  # more redis-server options
        self.proc = None
        self.log = open(workdir / "redis.log", "ab")
        self.start()

    def start(self):
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                       else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), *persistence, "--save", "", "--loglevel", "warning",
             *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        for _ in range(500):
            try:
                client.ping()
                return
            except (redis.exceptions.BusyLoadingError, redis.ConnectionError):
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    stop = kill

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db=0):
        return redis.Redis(port=self.port, db=db)


class Worker:
    def __init__(self, binary, name, server, workdir, concurrency):
        self.name = name
        self.args = [binary, "worker", "-b", server.url(0), "--result-backend", server.url(1),
                     "--test-tasks", "-n", f"{name}@chaos", "-c", str(concurrency)]
        self.log = open(workdir / f"{name}.log", "ab")
        self.proc = None
        self.starts = 0

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def results(client, ids):
    """task id -> stored status (None when no result yet)."""
    out = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for tid, raw in zip(chunk, client.mget([f"celery-task-meta-{t}" for t in chunk])):
            out[tid] = json.loads(raw)["status"] if raw else None
    return out


def run(tasks=5000, kills=10, redis_restarts=1, workers=2, concurrency=2, min_ms=5, max_ms=50,
        seed=None, binary=None, workdir=None, log=print):
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    binary = binary or os.environ.get("CELERIAC_BIN", str(ROOT / "build" / "celeriac"))
    workdir = Path(workdir or tempfile.mkdtemp(prefix="celeriac-chaos-"))
    marks = workdir / "marks"
    marks.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir)
    app = Celery("chaos", broker=server.url(0), backend=server.url(1))
    pool = [Worker(binary, f"w{i + 1}", server, workdir, concurrency) for i in range(workers)]
    try:
        ids = [app.send_task("tests.mark", (str(marks), rng.uniform(min_ms, max_ms))).id
               for _ in range(tasks)]
        for w in pool:
            w.start()
        # Spread the faults over the time the work should take on the workers' threads.
        span = tasks * (min_ms + max_ms) / 2 / 1000 / (workers * concurrency)
        faults = [(rng.uniform(0.05, 0.8) * span, "kill") for _ in range(kills)]
        faults += [(rng.uniform(0.2, 0.7) * span, "redis") for _ in range(redis_restarts)]
        started = time.time()
        restarts = []  # (due time, worker)
        kills_done = 0  # a kill falls through when every worker is down at that moment
        for at, what in sorted(faults):
            while time.time() - started < at:
                for due, w in list(restarts):
                    if time.time() >= due:
                        w.start()
                        restarts.remove((due, w))
                time.sleep(0.005)
            if what == "kill":
                w = rng.choice([w for w in pool if w.proc.poll() is None] or pool)
                if w.proc.poll() is None:
                    w.kill()
                    kills_done += 1
                    log(f"{time.time() - started:6.2f}s SIGKILL {w.name}")
                    restarts.append((time.time() + rng.uniform(0, 1.0), w))
            else:
                server.kill()
                log(f"{time.time() - started:6.2f}s SIGKILL redis-server")
                time.sleep(1.0)
                server.start()
                log(f"{time.time() - started:6.2f}s redis-server back")
        for _, w in restarts:
            w.start()
        client = redis.Redis(port=server.port, db=1)
        deadline = time.time() + max(120, span * 4)
        status = {}
        while time.time() < deadline:
            status = results(client, ids)
            if all(s == "SUCCESS" for s in status.values()):
                break
            time.sleep(0.5)
        elapsed = time.time() - started
        runs = {}
        for name in os.listdir(marks):
            runs[name.split(".")[0]] = runs.get(name.split(".")[0], 0) + 1
        lost = [t for t in ids if status.get(t) != "SUCCESS"]
        summary = {
            "tasks": tasks, "kills": kills, "kills_done": kills_done, "redis_restarts": redis_restarts, "seed": seed,
            "lost": len(lost), "duplicates": sum(n - 1 for n in runs.values() if n > 1),
            "never_ran": sum(1 for t in ids if t not in runs),
            "executions": sum(runs.values()), "seconds": round(elapsed, 1),
            "worker_starts": {w.name: w.starts for w in pool},
            "unacked_left": redis.Redis(port=server.port).hlen("unacked"),
            "workdir": str(workdir),
        }
        if lost:
            summary["lost_ids"] = lost[:10]
        return summary
    finally:
        for w in pool:
            w.stop()
        server.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--redis-restarts", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seed", type=int)
    args = p.parse_args()
    s = run(tasks=args.tasks, kills=args.kills, redis_restarts=args.redis_restarts,
            workers=args.workers, concurrency=args.concurrency, seed=args.seed)
    print(json.dumps(s, indent=1))
    print(f"lost={s['lost']} duplicates={s['duplicates']}")
    sys.exit(1 if s["lost"] else 0)


if __name__ == "__main__":
    main()
