"""A worker loop of your own, with only the ``Dequeuer``: claim, heartbeat, finish or
fail, under the claim's lease (so a stalled loop whose task was rescued cannot
overwrite the outcome of whoever took it over).

    python custom_loop.py --queue images                 # until SIGTERM or Ctrl-C
    python custom_loop.py --queue images --exit-when-idle 5

It handles two task types: ``image.thumbnail`` (spec ``{"width", "height", "max"}``,
returns the thumbnail's size) and anything else, which it fails for good. The database
is ``TASKQ_DATABASE_URL`` (else taskq's embedded PostgreSQL) and ``TASKQ_SCHEMA``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import taskq

stopping = threading.Event()


def thumbnail(dequeuer: taskq.Dequeuer, task: taskq.Task) -> dict[str, int]:
    width, height, biggest = task.spec["width"], task.spec["height"], task.spec["max"]
    if min(width, height, biggest) <= 0:
        raise taskq.TaskFailed(f"bad size {width}x{height} (max {biggest})")
    steps = 3
    for step in range(1, steps + 1):  # the work, reporting progress as a heartbeat
        dequeuer.heartbeat(task, taskq.Progress(step=step, steps=steps).to_json())
    scale = min(1.0, biggest / max(width, height))
    return {"width": round(width * scale), "height": round(height * scale)}


def run(queues: list[str], exit_when_idle: float | None) -> int:
    handled = 0
    idle_since = time.monotonic()
    with taskq.Dequeuer() as dequeuer:
        while not stopping.is_set():
            task = dequeuer.dequeue(*queues, timeout=1.0)  # sleeps on LISTEN/NOTIFY
            if task is None:
                if exit_when_idle is not None and time.monotonic() - idle_since > exit_when_idle:
                    break
                continue
            try:
                if task.type != "image.thumbnail":
                    raise taskq.TaskFailed(f"this loop does not handle {task.type!r}")
                result = thumbnail(dequeuer, task)
                dequeuer.finish(task, None, result=result)  # fenced: LeaseLost if rescued
                outcome = "finished"
            except taskq.TaskFailed as e:
                dequeuer.fail(task, None, error=str(e), final=True)
                outcome = "failed"
            except (taskq.TaskCancelled, taskq.LeaseLost):
                outcome = "dropped"  # cancelled, or taken back: not ours to finish
            except Exception as e:  # anything else: retried while attempts remain
                dequeuer.fail(task, None, error=f"{type(e).__name__}: {e}")
                outcome = "failed, may retry"
            handled += 1
            idle_since = time.monotonic()
            print(json.dumps({"task": task.id, "type": task.type, "outcome": outcome}),
                  flush=True)  # fmt: skip
    print(json.dumps({"handled": handled}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", action="append", default=[], help="repeat; default: any")
    parser.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())  # finish the task in hand, then stop
    return run(args.queue, args.exit_when_idle)


if __name__ == "__main__":
    sys.exit(main())
