"""Shifts the clock of every Python process that scripts/test-anytime.sh starts (this folder is
on their PYTHONPATH) by LOOM_CLOCK_SHIFT_SECONDS, with time-machine, while libfaketime shifts
every other process's (the Kafka broker, PostgreSQL, Node, Dovecot).

Python itself must not run under libfaketime: its sleeps and librdkafka's timed waits fail or
hang there. So a Python process started with libfaketime preloaded starts again without it,
and puts it back in the environment its children inherit. File times are shifted here too
(as libfaketime does for stat), so a file written now is as old as the shifted clock says."""

import os
import sys

PRELOAD_KEPT = "LOOM_FAKETIME_PRELOAD"


def _shift_file_times(shift_s: float) -> None:
    """os.stat/lstat/fstat report times `shift_s` later; os.utime stores them `shift_s` earlier."""
    shift_ns = int(shift_s * 1e9)

    def shifted(stat):
        def wrapper(*args, **kwargs):
            kind, (values, extra) = stat(*args, **kwargs).__reduce__()
            values = (*values[:7], *(int(t + shift_s) for t in values[7:10]))
            for name in ("st_atime", "st_mtime", "st_ctime"):
                extra[name] += shift_s
                extra[f"{name}_ns"] += shift_ns
            return kind(values, extra)
        return wrapper

    def unshifted_utime(path, times=None, *, ns=None, **kwargs):
        if times is not None:
            times = tuple(t - shift_s for t in times)
        elif ns is not None:
            ns = tuple(t - shift_ns for t in ns)
        else:  # "now": the shifted now, stored as the real now
            return _utime(path, **kwargs)
        return _utime(path, times, **kwargs) if ns is None else _utime(path, ns=ns, **kwargs)

    _utime = os.utime
    os.stat, os.lstat, os.fstat = shifted(os.stat), shifted(os.lstat), shifted(os.fstat)
    os.utime = unshifted_utime


if os.environ.get("LOOM_CLOCK_SHIFT_SECONDS"):
    preload = os.environ.get("LD_PRELOAD", "")
    if "faketime" in preload:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env[PRELOAD_KEPT] = preload
        os.execve(sys.executable, sys.orig_argv, env)
    if os.environ.get(PRELOAD_KEPT):
        os.environ["LD_PRELOAD"] = os.environ[PRELOAD_KEPT]

    import time

    import time_machine  # before reading the clock: its import takes a few hundredths of a second

    shift = float(os.environ["LOOM_CLOCK_SHIFT_SECONDS"])
    time_machine.travel(time.time() + shift, tick=True).start()
    time.time()  # time-machine's clock starts ticking at its first reading: make that now
    _shift_file_times(shift)
