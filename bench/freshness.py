"""How fresh a person's data is under `loom dev`: from a window's close to its last stage's rows.

Run from the repository root:

    .venv/bin/python bench/freshness.py [--minutes 20]

Starts `loom dev` with the demo producer, live (bench/idle.py's launcher: a fresh LOOM_HOME
marked as one the demo ran in, so there is no catch-up), lets it run for `--minutes`, then reads
from the database, for every window holding records that closed while it ran (until a minute
before the end):

- landed: `loom_offset_log.landed_at` minus the window's end;
- done: the last `loom_stage_windows.written_at` of the flow's stages minus the window's end
  (what a person waits for: the flow's every table holds the window).

Prints p50 and p95 per flow (a window not done by the end counts as not done, and is listed).
The window sensor plans a window `LOOM_WINDOW_GRACE_SECONDS` (5 s) after it closes, so no
figure is below that. Target (docs/performance.md): p95 of done ≤ 30 s for 5-minute windows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.idle import loom_dev  # noqa: E402 - needs the repository root on sys.path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def window_delays(database_url: str, since: datetime, until: datetime) -> dict[str, list[tuple]]:
    """Per flow, (window start, landed seconds, done seconds or None) of each window holding
    records whose end lies in [since, until)."""
    import psycopg

    from loom_assets.definitions import FLOWS

    delays: dict[str, list[tuple]] = {}
    with psycopg.connect(database_url) as conn:
        for flow in FLOWS:
            rows = conn.execute(
                "SELECT l.window_start, l.window_end, max(l.landed_at),"
                "  (SELECT max(w.written_at) FROM loom_stage_windows w"
                "    WHERE w.window_start = l.window_start AND w.table_name = ANY(%(tables)s)"
                "    HAVING count(*) = cardinality(%(tables)s))"
                " FROM loom_offset_log l WHERE l.flow = %(flow)s AND l.window_end >= %(since)s"
                "  AND l.window_end < %(until)s"
                " GROUP BY l.window_start, l.window_end HAVING sum(l.end_offset - l.start_offset) > 0"
                " ORDER BY l.window_start",
                {"flow": flow.name, "tables": flow.stage_tables, "since": since, "until": until},
            ).fetchall()
            windows = []
            for start, end, landed, written in rows:
                # Done once landed and every stage has written it (a flow without stages: landed).
                done = landed if landed and not flow.stages else (max(written, landed) if written and landed else None)
                windows.append((start, (landed - end).total_seconds() if landed else None,
                                (done - end).total_seconds() if done else None))
            delays[flow.name] = windows
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--port", type=int, default=3310)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loom-freshness-") as home:
        with loom_dev(home, args.port, demo=True):
            started = datetime.now(UTC)
            print(f"`loom dev` with the live demo is up; measuring for {args.minutes:g} min", flush=True)
            time.sleep(args.minutes * 60)
            stack = json.loads((Path(home) / "stack.json").read_text())
            url = stack["DATABASE_URL"]
            delays = window_delays(url, started, datetime.now(UTC) - timedelta(minutes=1))
    figures = {}
    print(f"{'flow':16s} windows  landed p50/p95     done p50/p95   not done")
    for flow, windows in delays.items():
        if not windows:
            continue
        landed = [w[1] for w in windows if w[1] is not None]
        done = [w[2] for w in windows if w[2] is not None]
        missing = [f"{w[0]:%H:%M}" for w in windows if w[2] is None]
        figures[flow] = {"windows": len(windows), "landed_p50": statistics.median(landed) if landed else None,
                         "landed_p95": percentile(landed, 0.95) if landed else None,
                         "done_p50": statistics.median(done) if done else None,
                         "done_p95": percentile(done, 0.95) if done else None, "not_done": missing}
        f = figures[flow]
        print(f"{flow:16s} {len(windows):7d}  "
              + (f"{f['landed_p50']:5.1f} / {f['landed_p95']:5.1f} s" if landed else "      -        ")
              + "   " + (f"{f['done_p50']:5.1f} / {f['done_p95']:5.1f} s" if done else "      -        ")
              + f"   {', '.join(missing) or '-'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
