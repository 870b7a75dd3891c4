"""bench/queue: Python Celery (solo, prefork -c 2), BullMQ and `celeriac worker -c 2` on one
redis-server, in one run. Prints a table with tasks/s, ratios, round-trip latency, idle RSS and
start-to-first-result. Run it through run.sh (it builds, installs the peers and starts Redis)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_BIN = Path(sys.executable).parent

sys.path.insert(0, str(HERE.parent / "common"))
from harness import RedisBench, enqueue  # noqa: E402  (shared with bench/pool)


def process_tree_rss_kb(pid):
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Bench(RedisBench):
    def __init__(self, n, latency_n):
        super().__init__()
        self.n = n
        self.latency_n = latency_n
        self.broker = f"redis://127.0.0.1:{self.port}/0"
        self.backend = f"redis://127.0.0.1:{self.port}/1"
        self.env = dict(os.environ, BENCH_BROKER=self.broker, BENCH_BACKEND=self.backend)

    def workers(self):
        celery = [str(VENV_BIN / "celery"), "-A", "benchtasks", "worker", "-l", "warning",
                  "--without-mingle", "--without-gossip"]
        return {
            "celery solo": celery + ["-P", "solo", "-n", "solo@bench"],
            "celery prefork -c 2": celery + ["-P", "prefork", "-c", "2", "-n", "prefork@bench"],
            "celeriac -c 2": [str(REPO / "build" / "celeriac"), "worker", "-b", self.broker,
                              "--result-backend", self.backend, "-c", "2", "-l", "warning",
                              "-n", "celeriac@bench"],
        }

    def start(self, cmd):
        return subprocess.Popen(cmd, cwd=HERE, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def drain(self, cmd):
        """Enqueue N, start the worker, time until N results are stored."""
        self.r.flushall()
        enqueue(self.r, self.n)
        start = time.perf_counter()
        p = self.start(cmd)
        first = None
        while True:
            stored = self.rb.dbsize()
            if stored and first is None:
                first = time.perf_counter() - start
            if stored >= self.n:
                break
            if p.poll() is not None:
                raise RuntimeError(f"worker exited: {cmd}")
            time.sleep(0.005)
        took = time.perf_counter() - start
        self.stop(p)
        # The rate counts from the first stored result, so start-up time (seconds for Celery,
        # reported on its own below) does not count against the drain.
        return {"tasks_per_s": (self.n - 1) / (took - first), "drain_s": took - first,
                "first_result_s": first}

    def start_to_first_result(self, cmd):
        self.r.flushall()
        enqueue(self.r, 1)
        start = time.perf_counter()
        p = self.start(cmd)
        while self.rb.dbsize() < 1:
            time.sleep(0.001)
        took = time.perf_counter() - start
        time.sleep(2.0)  # idle now: measure resident memory
        rss = process_tree_rss_kb(p.pid)
        self.stop(p)
        return {"first_result_ms": took * 1000, "idle_rss_mib": rss / 1024}

    def python_latency(self, cmd):
        self.r.flushall()
        p = self.start(cmd)
        app = Celery("bench-client", broker=self.broker, backend=self.backend)
        add = app.signature("tasks.add")
        for i in range(50):  # warm up
            add.delay(i, 1).get(timeout=30)
        samples = []
        for i in range(self.latency_n):
            t = time.perf_counter()
            assert add.delay(i, 1).get(timeout=10) == i + 1
            samples.append((time.perf_counter() - t) * 1000)
        self.stop(p)
        app.close()
        samples.sort()
        return {"p50_ms": samples[len(samples) // 2], "p99_ms": samples[len(samples) * 99 // 100]}

    def cpp_latency(self, cmd):
        self.r.flushall()
        p = self.start(cmd)
        out = subprocess.run([str(REPO / "build" / "celeriac_bench_roundtrip"), self.broker,
                              self.backend, str(self.latency_n)], capture_output=True, text=True,
                             check=True)
        self.stop(p)
        return json.loads(out.stdout)

    def bullmq(self):
        self.r.flushall()
        out = subprocess.run(["node", str(HERE / "bullmq_bench.mjs"), str(self.port), str(self.n)],
                             capture_output=True, text=True, check=True, cwd=HERE)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    b = Bench(args.n, args.latency_n)
    res = {"n": args.n, "cpus": os.cpu_count(), "throughput": {}, "latency": {}, "startup": {}}
    try:
        w = b.workers()
        for name, cmd in w.items():
            res["throughput"][name] = b.drain(cmd)
            print(f"{name:22s} {res['throughput'][name]['tasks_per_s']:10.0f} tasks/s", flush=True)
        res["throughput"]["bullmq c=50"] = b.bullmq()
        print(f"{'bullmq c=50':22s} {res['throughput']['bullmq c=50']['tasks_per_s']:10.0f} tasks/s",
              flush=True)
        for name in ("celery prefork -c 2", "celeriac -c 2"):
            res["startup"][name] = b.start_to_first_result(w[name])
        res["latency"]["python client -> celery solo"] = b.python_latency(w["celery solo"])
        res["latency"]["python client -> celeriac"] = b.python_latency(w["celeriac -c 2"])
        res["latency"]["C++ client -> celeriac"] = b.cpp_latency(w["celeriac -c 2"])
    finally:
        b.close()

    t = res["throughput"]
    best_celery = max(t["celery solo"]["tasks_per_s"], t["celery prefork -c 2"]["tasks_per_s"])
    ours = t["celeriac -c 2"]["tasks_per_s"]
    print(f"\nbench/queue: N={args.n} tasks.add, enqueue then drain with results stored, "
          f"one redis-server, {os.cpu_count()} CPUs\n")
    print("| worker | tasks/s | celeriac is |")
    print("|---|---:|---:|")
    for name, v in t.items():
        print(f"| {name} | {v['tasks_per_s']:.0f} | {ours / v['tasks_per_s']:.2f}x |")
    print(f"\nvs Celery's best pool: {ours / best_celery:.1f}x (goal 20x); "
          f"vs BullMQ: {ours / t['bullmq c=50']['tasks_per_s']:.2f}x (goal 1.5x)\n")
    print("| sequential round trip | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for name, v in res["latency"].items():
        print(f"| {name} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |")
    print("\n| worker | start to first result ms | idle RSS MiB |")
    print("|---|---:|---:|")
    for name, v in res["startup"].items():
        print(f"| {name} | {v['first_result_ms']:.0f} | {v['idle_rss_mib']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
