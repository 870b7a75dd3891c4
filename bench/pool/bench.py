"""Threads vs processes executor pool (docs/decisions/executor-pool.md). Run by hand:

    /path/to/venv/bin/python bench/pool/bench.py [-n 10000] [--celeriac build/celeriac]

Starts one redis-server on a free loopback port and, for `--pool threads` and
`--pool processes` (both -c 2), measures:
  1. drain rate of N tasks.add (all enqueued before the worker starts, counted from the first
     stored result, as bench/queue does);
  2. overhead per 10 ms task: 400 tasks.sleep(0.01) drained with -c 2; the ideal is 2 s,
     overhead per task = (drain time * 2 / 400) - 10 ms;
  3. RSS and PSS of the worker and its children, idle after start;
  4. memory-mapped file sharing: every executor maps the same 200 MB file (tests.map_file,
     which keeps its mapping as a worker keeps its weights) and touches every page; then
     Rss / Pss / Shared_Clean per process from /proc/<pid>/smaps_rollup;
  5. processes only: cost of replacing a dead child (50 tests.abort with -c 1).
Writes bench/out/pool.json and prints a table.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "common"))
from harness import RedisBench, enqueue, task_message  # noqa: E402  (shared with bench/queue)


def tree_pids(pid):
    """The worker and its children (children of any of its threads)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def rollup(pid):
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])  # kB
    return {k: out.get(k, 0) for k in ("Rss", "Pss", "Shared_Clean", "Shared_Dirty",
                                       "Private_Clean", "Private_Dirty")}


class Bench(RedisBench):
    def __init__(self, celeriac, n):
        super().__init__()
        self.celeriac = celeriac
        self.n = n

    def start(self, pool, concurrency=2, *extra):
        cmd = [self.celeriac, "worker", "-b", f"redis://127.0.0.1:{self.port}/0",
               "--result-backend", f"redis://127.0.0.1:{self.port}/1", "-c", str(concurrency),
               "-l", "warning", "--pool", pool, "--test-tasks", "-n", f"{pool}@bench", *extra]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def wait_results(self, n, p, timeout=300):
        start = time.perf_counter()
        first = None
        while True:
            stored = self.rb.dbsize()
            if stored and first is None:
                first = time.perf_counter()
            if stored >= n:
                return start, first, time.perf_counter()
            if p.poll() is not None or time.perf_counter() - start > timeout:
                raise RuntimeError("worker exited or timed out")
            time.sleep(0.002)

    def drain_add(self, pool):
        self.r.flushall()
        enqueue(self.r, self.n)
        p = self.start(pool)
        _, first, end = self.wait_results(self.n, p)
        self.stop(p)
        return (self.n - 1) / (end - first)

    def sleep_overhead(self, pool, n=400, seconds=0.01):
        self.r.flushall()
        p = self.start(pool)
        time.sleep(1.0)  # started, children up
        pipe = self.r.pipeline(transaction=False)
        for _ in range(n):
            pipe.lpush("celery", task_message("tasks.sleep", [seconds]))
        t0 = time.perf_counter()
        pipe.execute()
        _, _, end = self.wait_results(n, p)
        self.stop(p)
        took = end - t0
        return (took * 2 / n - seconds) * 1000  # ms per task

    def memory(self, pool, mapped_file):
        self.r.flushall()
        p = self.start(pool)
        time.sleep(1.0)
        idle = {pid: rollup(pid) for pid in tree_pids(p.pid)}
        # Two tasks at once, each holding its executor, so both executors map the file.
        for _ in range(2):
            self.r.lpush("celery", task_message("tests.map_file", [str(mapped_file), 1.0]))
        self.wait_results(2, p)
        mapped = {pid: rollup(pid) for pid in tree_pids(p.pid)}
        self.stop(p)
        return {"idle": idle, "mapped": mapped}

    def replacement(self, n=50):
        self.r.flushall()
        p = self.start("processes", 1)
        time.sleep(1.0)
        pipe = self.r.pipeline(transaction=False)
        for _ in range(n):
            pipe.lpush("celery", task_message("tests.abort", []))
        t0 = time.perf_counter()
        pipe.execute()
        _, _, end = self.wait_results(n, p)
        self.stop(p)
        return (end - t0) / n * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--celeriac", default=str(REPO / "build" / "celeriac"))
    ap.add_argument("--mapped-mb", type=int, default=200)
    args = ap.parse_args()
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    mapped_file = out_dir / f"mapped-{args.mapped_mb}mb.bin"
    if not mapped_file.exists() or mapped_file.stat().st_size != args.mapped_mb << 20:
        with open(mapped_file, "wb") as f:
            for _ in range(args.mapped_mb):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())  # clean page-cache pages, as weights on disk are

    b = Bench(args.celeriac, args.n)
    results = {}
    try:
        for pool in ("threads", "processes"):
            r = results[pool] = {}
            r["add_tasks_per_s"] = b.drain_add(pool)
            r["overhead_ms_per_10ms_task"] = b.sleep_overhead(pool)
            r["memory_kb"] = b.memory(pool, mapped_file)
        results["processes"]["replace_dead_child_ms"] = b.replacement()
    finally:
        b.close()
    (out_dir / "pool.json").write_text(json.dumps(results, indent=1))

    print(f"{'':34}{'threads':>14}{'processes':>14}")
    row = lambda name, f: print(f"{name:34}" + "".join(f"{f(results[p]):>14}" for p in
                                                      ("threads", "processes")))
    row("tasks.add drained, tasks/s", lambda r: f"{r['add_tasks_per_s']:,.0f}")
    row("overhead per 10 ms task, ms", lambda r: f"{r['overhead_ms_per_10ms_task']:.3f}")
    for phase in ("idle", "mapped"):
        row(f"{phase}: processes", lambda r: str(len(r["memory_kb"][phase])))
        for key in ("Rss", "Pss", "Shared_Clean", "Shared_Dirty"):
            row(f"{phase}: sum {key}, MiB",
                lambda r: f"{sum(v[key] for v in r['memory_kb'][phase].values()) / 1024:.1f}")
    print(f"replace a dead child (abort + respawn), ms: "
          f"{results['processes']['replace_dead_child_ms']:.2f}")
    for pool in ("threads", "processes"):
        for pid, v in results[pool]["memory_kb"]["mapped"].items():
            print(f"  {pool} pid {pid}: " + ", ".join(f"{k} {v[k] / 1024:.1f} MiB" for k in v))


if __name__ == "__main__":
    main()
