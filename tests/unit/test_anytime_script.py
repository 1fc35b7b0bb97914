"""`scripts/test-anytime.sh` runs tests at another date and time (every process sees the shifted
clock) and in random order."""

import os
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

CLOCK_TEST = '''
import os, subprocess
from datetime import UTC, datetime

def test_the_clock_is_shifted_for_this_process_and_its_children():
    if "FAKETIME" not in os.environ:  # the random-order run keeps the real clock
        return
    assert datetime(2027, 12, 31, 23, 58, tzinfo=UTC) <= datetime.now(UTC) < datetime(2028, 1, 1, 0, 5, tzinfo=UTC)
    child = subprocess.run(["date", "-u", "+%Y-%m-%d %H"], capture_output=True, text=True, check=True).stdout
    assert child.strip() in ("2027-12-31 23", "2028-01-01 00")
'''


def real_clock_env() -> dict[str, str]:
    """This process's environment without the script's own shift, should it run under it."""
    shifting = {"LD_PRELOAD", "FAKETIME", "LOOM_CLOCK_SHIFT_SECONDS", "LOOM_FAKETIME_PRELOAD", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in shifting}


def test_the_script_runs_tests_at_a_given_instant_and_in_random_order(tmp_path):
    test_file = tmp_path / "test_clock.py"
    test_file.write_text(CLOCK_TEST)
    result = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "test-anytime.sh"), str(test_file)],
        env={**real_clock_env(), "LOOM_ANYTIME_INSTANTS": "2027-12-31 23:58"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== tests at 2027-12-31 23:58 UTC" in result.stdout
    assert "== tests in random order" in result.stdout
    assert result.stdout.count("1 passed") == 2
    assert "passed at every instant and in random order" in result.stdout
