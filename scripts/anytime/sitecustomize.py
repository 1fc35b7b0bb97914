"""Shifts the clock of every Python process that scripts/test-anytime.sh starts (this folder is
on their PYTHONPATH) by LOOM_CLOCK_SHIFT_SECONDS, with time-machine, while libfaketime shifts
every other process's (the Kafka broker, PostgreSQL, Node, Dovecot).

Python itself must not run under libfaketime: its sleeps and librdkafka's timed waits fail or
hang there. So a Python process started with libfaketime preloaded starts again without it,
and puts it back in the environment its children inherit."""

import os
import sys

PRELOAD_KEPT = "LOOM_FAKETIME_PRELOAD"

if os.environ.get("LOOM_CLOCK_SHIFT_SECONDS"):
    preload = os.environ.get("LD_PRELOAD", "")
    if "faketime" in preload:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env[PRELOAD_KEPT] = preload
        os.execve(sys.executable, sys.orig_argv, env)
    if os.environ.get(PRELOAD_KEPT):
        os.environ["LD_PRELOAD"] = os.environ[PRELOAD_KEPT]

    import time

    import time_machine

    time_machine.travel(time.time() + float(os.environ["LOOM_CLOCK_SHIFT_SECONDS"]), tick=True).start()
