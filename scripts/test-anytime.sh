#!/usr/bin/env bash
# Runs the tests as if it were another day and time, and in random order: a test whose outcome
# depends on the date, the time of day, the day of the week, a DST change, the turn of a year or
# the order the tests run in fails here. Every process of the run sees the same shifted clock:
# Python's through time-machine (scripts/anytime/sitecustomize.py), the others' (the Kafka
# broker, PostgreSQL, Node, Dovecot) through libfaketime.
#
#   scripts/test-anytime.sh                  # the whole suite at each instant, then in random order
#   scripts/test-anytime.sh tests/unit       # only these tests
#   LOOM_ANYTIME_INSTANTS="2027-02-28 23:59" scripts/test-anytime.sh   # other instants (UTC), ';'-separated
#   LOOM_ANYTIME_RANDOM_ORDER=0 ...          # without the random-order pass
set -uo pipefail
cd "$(dirname "$0")/.."
command -v faketime >/dev/null || { echo "faketime is missing: apt-get install faketime" >&2; exit 2; }
python=.venv/bin/python
[ -x "$python" ] || { echo "run 'make install' first" >&2; exit 2; }

if [ -n "${LOOM_ANYTIME_INSTANTS:-}" ]; then
  IFS=';' read -r -a instants <<<"$LOOM_ANYTIME_INSTANTS"
else
  instants=(
    "$(date -u -d 'next sunday 12:00' '+%Y-%m-%d %H:%M')"  # a Sunday noon
    "$(date -u -d 'next monday 00:02' '+%Y-%m-%d %H:%M')"  # just after midnight on a Monday
    "2027-03-14 09:59"                                    # the US change to summer time
    "2027-12-31 23:58"                                    # the turn of a year
  )
fi

failed=()
for instant in "${instants[@]}"; do
  # An offset, not a start time: every process started later sees the same shifted clock. File
  # times stay real for every process (Python's os.stat is not shifted either).
  shift_s=$(( $(date -u -d "$instant UTC" +%s) - $(date -u +%s) ))
  echo "== tests at $instant UTC (clock shifted by ${shift_s}s)"
  LOOM_CLOCK_SHIFT_SECONDS=$shift_s PYTHONPATH="$PWD/scripts/anytime${PYTHONPATH:+:$PYTHONPATH}" \
    NO_FAKE_STAT=1 faketime -f "$(printf '%+ds' "$shift_s")" \
    "$python" -m pytest -q -p no:cacheprovider -p no:randomly "$@" || failed+=("at $instant UTC")
done

if [ "${LOOM_ANYTIME_RANDOM_ORDER:-1}" = 1 ]; then
  echo "== tests in random order"
  "$python" -m pytest -q -p no:cacheprovider -p randomly "$@" || failed+=("in random order")
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
if [ "${LOOM_ANYTIME_RANDOM_ORDER:-1}" = 1 ]; then
  echo "passed at every instant and in random order"
else
  echo "passed at every instant"
fi
