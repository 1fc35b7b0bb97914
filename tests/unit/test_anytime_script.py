"""`scripts/test-anytime.sh` runs tests at another date and time (every process sees the shifted
clock) and in random order."""

import os
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Notes the time this process and a child (not Python: libfaketime's side) see, one line a run.
CLOCK_TEST = '''
import os, subprocess
from datetime import UTC, datetime

def test_note_the_clocks():
    child = subprocess.run(["date", "-u", "+%Y-%m-%dT%H"], capture_output=True, text=True, check=True).stdout
    with open(os.environ["CLOCK_NOTES"], "a") as notes:
        notes.write(f"{datetime.now(UTC):%Y-%m-%dT%H} {child.strip()}\\n")
'''


def real_clock_env() -> dict[str, str]:
    """This process's environment without the script's own shift, should it run under it."""
    shifting = {"LD_PRELOAD", "FAKETIME", "LOOM_CLOCK_SHIFT_SECONDS", "LOOM_FAKETIME_PRELOAD", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in shifting}


def test_the_script_runs_tests_at_a_given_instant_and_in_random_order(tmp_path):
    test_file, notes = tmp_path / "test_clock.py", tmp_path / "notes.txt"
    test_file.write_text(CLOCK_TEST)
    env = {**real_clock_env(), "LOOM_ANYTIME_INSTANTS": "2027-12-31 23:58", "CLOCK_NOTES": str(notes)}

    def real_hour() -> str:
        return subprocess.run(["date", "-u", "+%Y-%m-%dT%H"], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    before = real_hour()
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "test-anytime.sh"), str(test_file)],
                            env=env, capture_output=True, text=True, timeout=300)
    after = real_hour()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== tests at 2027-12-31 23:58 UTC" in result.stdout
    assert "== tests in random order" in result.stdout
    assert "passed at every instant and in random order" in result.stdout
    shifted, unshifted = notes.read_text().splitlines()
    # Both clocks at the instant (or just past midnight), then both on the real clock again.
    assert shifted in ("2027-12-31T23 2027-12-31T23", "2028-01-01T00 2028-01-01T00")
    real_python, real_child = unshifted.split()
    assert real_python == real_child and real_python in (before, after)
