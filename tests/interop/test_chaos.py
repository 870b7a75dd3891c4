"""The chaos test (tests/chaos/chaos.py) at CI size: workers SIGKILLed at random moments and
restarted, redis-server SIGKILLed and restarted once; no task may be lost."""
import chaos  # tests/chaos, on the path through conftest


def test_no_task_lost_when_workers_and_redis_die(tmp_path, capsys):
    summary = chaos.run(tasks=600, kills=3, redis_restarts=1, workdir=tmp_path)
    print(summary)
    assert summary["lost"] == 0, summary
    assert summary["never_ran"] == 0
    assert summary["unacked_left"] == 0
    assert summary["kills_done"] >= 1
    assert sum(summary["worker_starts"].values()) == 2 + summary["kills_done"]
