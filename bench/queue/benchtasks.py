"""The Python Celery peer of bench/queue: tasks.add with Celery's default settings."""
import os

from celery import Celery

app = Celery("benchtasks", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BACKEND"])


@app.task(name="tasks.add")
def add(x, y):
    return x + y
