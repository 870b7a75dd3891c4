"""Fixtures for the interop suite: a real redis-server, real Celery (from the venv) and the
celeriac binary, all on 127.0.0.1. Each test gets a flushed server."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


sys.path.insert(0, str(HERE.parent / "chaos"))
from chaos import RedisServer, free_port  # noqa: E402  (one redis-server launcher for both)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False)
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server):
    redis_server.client().flushall()
    return redis_server


def celeriac_bin():
    path = os.environ.get("CELERIAC_BIN", str(HERE.parents[1] / "build" / "celeriac"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"celeriac binary not found at {path}: build it or set CELERIAC_BIN")
    return path


class Process:
    """A child process with its output kept in a file, shown when a test fails."""

    def __init__(self, args, name, log_dir, cwd=None, env=None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env=env, start_new_session=True)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_for_node(app, node, timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{node} exited early:\n{proc.output()}")
        replies = app.control.ping(destination=[node], timeout=0.5) or []
        if any(node in r for r in replies):
            return
    raise AssertionError(f"{node} did not answer ping within {timeout}s:\n"
                         f"{proc.output() if proc else ''}")


def wait_inspect(app, node, method, count, timeout=15.0):
    """Waits until inspect().<method>() lists at least `count` tasks on `node`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(inspect_node(app, node, method)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{node} never listed {count} {method} tasks")


def inspect_node(app, node, method, timeout=10.0, **kwargs):
    """One inspect() call's answer for `node`, retried until it comes (a busy machine can miss
    the 1 s reply window once)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        replies = getattr(app.control.inspect(destination=[node], timeout=1.0), method)(**kwargs)
        if replies and node in replies:
            return replies[node]
    raise AssertionError(f"{node} did not answer inspect().{method}()")


@pytest.fixture
def celery_app(broker):
    app = Celery("interop-client", broker=broker.url(0), backend=broker.url(1))
    app.conf.result_expires = 86400
    yield app
    app.close()


@pytest.fixture
def workers(broker, celery_app, tmp_path, request):
    """Factory: workers.celeriac(name, *args) / workers.python(name, *args) start real workers
    and wait until they answer ping; all are stopped at teardown (logs shown on failure)."""
    started = []

    class Factory:
        def celeriac(self, name="celeriac", *args, wait=True, env=None):
            node = f"{name}@interop"
            p = Process([celeriac_bin(), "worker", "-b", broker.url(0), "--result-backend",
                         broker.url(1), "--test-tasks", "-n", node, *args], name, tmp_path,
                        env=dict(os.environ, **env) if env else None)
            started.append(p)
            p.node = node
            if wait:
                wait_for_node(celery_app, node, proc=p)
            return p

        def python(self, name="python", *args, wait=True, env=None):
            node = f"{name}@interop"
            env = dict(os.environ, INTEROP_BROKER=broker.url(0), INTEROP_BACKEND=broker.url(1),
                       **(env or {}))
            p = Process([str(VENV_BIN / "celery"), "-A", "pytasks", "worker", "-n", node,
                         "--without-mingle", "--without-gossip", "-l", "warning", *args],
                        name, tmp_path, cwd=str(HERE), env=env)
            started.append(p)
            p.node = node
            if wait:
                wait_for_node(celery_app, node, timeout=30, proc=p)
            return p

    yield Factory()
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for p in started:
        p.stop()
        if failed:
            print(f"\n----- {p.name} output -----\n{p.output()[-4000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def run_cli(*args, broker, timeout=60):
    """Runs `celeriac ARGS` against the test broker and returns the CompletedProcess."""
    return subprocess.run([celeriac_bin(), *args, "-b", broker.url(0), "--result-backend",
                           broker.url(1)], capture_output=True, text=True, timeout=timeout)
