"""App lifecycle: app categories and foreground sessions
(docs/flows/app_lifecycle.md#foreground-sessions, docs/flows/app_lifecycle.md#categories).

Every raw launch/foreground/background/terminate/crash event becomes one enriched row carrying
the app's category and the foreground session it opens, continues or closes.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from loom_assets.stages.frames import float_or_nan, iso, typed_frame, utc, with_columns

CATEGORIES_PATH = Path(__file__).parent / "data" / "app_categories.json"
UNKNOWN = "unknown"

OPEN_EVENTS = frozenset({"launch", "foreground"})
CLOSE_EVENTS = frozenset({"background", "terminate", "crash"})

# A foreground session longer than this is taken as abandoned: the closing event was lost
# (app killed, phone off, client not running). 12 h is longer than any plausible single
# foreground stretch yet short enough that a stale open from yesterday does not swallow today.
MAX_SESSION = pd.Timedelta(hours=12)

_SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "loom:app_lifecycle:session")

RAW_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "app_identifier", "app_name", "event_type", "duration_seconds", "metadata",
)

_TIME = "datetime64[us, UTC]"
ENRICHED_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "app_identifier": "str",
    "app_name": "str",
    "event_type": "str",
    "app_category": "str",
    "category_source": "str",       # bundle_id | android_label | unknown
    "session_id": "str",
    "session_start": _TIME,         # NaT when a close arrives with no known open and no client duration
    "session_end": _TIME,           # NaT while the session is open
    "foreground_seconds": "float64",  # on the closing event only
    "client_duration_seconds": "float64",  # the client's own figure, as sent
    "session_open": "bool",         # the session is open after this event
    "is_crash": "bool",
    "session_flag": "str",          # see _next_session; NaN for an ordinary event
}

# Table name -> the DataFrame columns written there (the table adds model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {"app_lifecycle_enriched": tuple(ENRICHED_DTYPES)}


# -- categories ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppCategories:
    """A versioned app-id -> category table (data/app_categories.json)."""

    version: str
    exact: Mapping[str, str]                  # lower-cased app id -> category
    prefixes: tuple[tuple[str, str], ...]     # (lower-cased prefix ending in '.', category), longest first
    android_labels: Mapping[str, str]         # normalised label -> category
    names: Mapping[str, str]                  # category -> display name

    def category_of(self, app_identifier: str | None, android_label: Any = None) -> tuple[str, str]:
        """(category, source): an exact id, else the longest id prefix, else the client's Android
        category label, else ('unknown', 'unknown')."""
        ident = (app_identifier or "").strip().lower()
        if ident:
            if ident in self.exact:
                return self.exact[ident], "bundle_id"
            dotted = ident + "."  # so prefix 'com.spotify.' matches 'com.spotify' but not 'com.spotifyx'
            for prefix, category in self.prefixes:
                if dotted.startswith(prefix):
                    return category, "bundle_id"
        label = _normalised_label(android_label)
        if label in self.android_labels:
            return self.android_labels[label], "android_label"
        if label.startswith("GAME_"):  # Play Store game genres: GAME_ACTION, GAME_PUZZLE, ...
            return self.android_labels.get("GAME", UNKNOWN), "android_label"
        return UNKNOWN, UNKNOWN


def load_app_categories(path: str | Path | None = None) -> AppCategories:
    """Read and check the category table; a typo in a category name fails here, not in a run."""
    data = json.loads(Path(path or CATEGORIES_PATH).read_text(encoding="utf-8"))
    names = dict(data["categories"])

    def checked(mapping: Mapping[str, str], what: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, category in mapping.items():
            if category not in names:
                raise ValueError(f"{what} {key!r}: unknown category {category!r}")
            norm = key.strip().lower() if what != "android label" else _normalised_label(key)
            if norm in out:
                raise ValueError(f"{what} {key!r} is listed twice")
            out[norm] = category
        return out

    exact = checked(data["bundle_ids"], "bundle id")
    prefixes = checked(data["bundle_id_prefixes"], "bundle id prefix")
    bad = [p for p in prefixes if not p.endswith(".")]
    if bad:
        raise ValueError(f"bundle id prefixes must end with '.': {bad}")
    return AppCategories(
        version=str(data["version"]),
        exact=exact,
        prefixes=tuple(sorted(prefixes.items(), key=lambda item: -len(item[0]))),
        android_labels=checked(data["android_labels"], "android label"),
        names=names,
    )


def android_label(metadata: Any) -> Any:
    """The Android category label a client put in `metadata` (`android_category` or `category`)."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    if not isinstance(metadata, Mapping):
        return None
    for key in ("android_category", "category"):
        if metadata.get(key) not in (None, ""):
            return metadata[key]
    return None


def _normalised_label(label: Any) -> str:
    """'category_social', 'Social', 'CATEGORY_SOCIAL' -> 'SOCIAL'; 4 -> '4'."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return ""
    text = str(label).strip().upper().replace(" ", "_").replace("&", "AND").replace("-", "_")
    return text.removeprefix("CATEGORY_")


# -- sessions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Session:
    session_id: str
    start: pd.Timestamp  # NaT when unknown
    end: pd.Timestamp    # NaT while open
    is_open: bool


def enrich(
    events: pd.DataFrame,
    open_sessions: pd.DataFrame,
    categories: AppCategories,
    max_session: pd.Timedelta = MAX_SESSION,
) -> pd.DataFrame:
    """One row per raw event: its app category and its foreground session.

    A session of (device_id, app_identifier) opens on launch/foreground and closes on
    background/terminate/crash. `open_sessions` is the last enriched row per (device_id,
    app_identifier) from earlier windows, so a session opened in one window closes in the next.
    Events are taken in event-time order (recorded_at, then source_partition, source_offset),
    so out-of-order delivery within a window does not matter.
    """
    events = with_columns(events, RAW_COLUMNS)
    if events.empty:
        return typed_frame([], ENRICHED_DTYPES)
    events = events.assign(recorded_at=utc(events["recorded_at"]))
    ordered = events.sort_values(["recorded_at", "source_partition", "source_offset"], kind="stable")
    sessions = _carried_sessions(open_sessions)
    rows = []
    for event in ordered.to_dict("records"):
        key = (event["device_id"], event["app_identifier"])
        category, source = categories.category_of(event["app_identifier"], android_label(event["metadata"]))
        sessions[key], session_fields = _next_session(sessions.get(key), event, max_session)
        rows.append({
            **{c: event[c] for c in RAW_COLUMNS if c in ENRICHED_DTYPES},
            "app_category": category,
            "category_source": source,
            "client_duration_seconds": float_or_nan(event["duration_seconds"]),
            "is_crash": event["event_type"] == "crash",
            **session_fields,
        })
    return typed_frame(rows, ENRICHED_DTYPES)


def _next_session(current: _Session | None, event: dict, max_session: pd.Timedelta) -> tuple[_Session | None, dict]:
    """The session state after `event` and the session columns of its row.

    Rules (first that applies), with the `session_flag` they set:
    - open event, a session open for at most `max_session`: the duplicate joins it, the first
      open is kept (`duplicate_open`; also a launch followed by a foreground).
    - open event, a session open longer than `max_session`: that one is abandoned, a new one
      opens (`previous_abandoned`).
    - open event otherwise: a new session opens.
    - close event at most `max_session` after the open: the session closes,
      foreground_seconds = close - open.
    - close event earlier than the open (clock skew, late delivery): it closes,
      foreground_seconds NaN rather than negative (`clock_skew`).
    - close event, the open session is older than `max_session`: treated as a close with no known
      open (`abandoned`).
    - close event within `max_session` after the session already closed (terminate after
      background): it joins that session and adds no foreground time (`already_closed`), since
      the client's terminate duration counts from launch and would double-count.
    - close event with no known open (`close_without_open`): foreground_seconds falls back to the
      client's duration_seconds when it is between 0 and `max_session`, and the session start
      is close - duration (NaT if there is no usable duration).
    """
    at: pd.Timestamp = event["recorded_at"]
    kind = event["event_type"]
    device, app = event["device_id"], event["app_identifier"]

    if kind in OPEN_EVENTS:
        flag = None
        if current is not None and current.is_open:
            if at - current.start <= max_session:
                return current, _session_fields(current, flag="duplicate_open")
            flag = "previous_abandoned"
        opened = _Session(_session_id(device, app, f"open@{iso(at)}"), at, pd.NaT, True)
        return opened, _session_fields(opened, flag=flag)

    if kind not in CLOSE_EVENTS:
        return current, _session_fields(None, flag="unknown_event_type")

    flag = "close_without_open"
    if current is not None and current.is_open:
        open_for = at - current.start
        if open_for < pd.Timedelta(0):
            closed = replace(current, end=at, is_open=False)
            return closed, _session_fields(closed, foreground=math.nan, flag="clock_skew")
        if open_for <= max_session:
            closed = replace(current, end=at, is_open=False)
            return closed, _session_fields(closed, foreground=open_for.total_seconds())
        flag = "abandoned"
    elif current is not None and not pd.isna(current.end) and pd.Timedelta(0) <= at - current.end <= max_session:
        return current, _session_fields(current, foreground=math.nan, flag="already_closed")

    duration = float_or_nan(event["duration_seconds"])
    if not (0 <= duration <= max_session.total_seconds()):  # False for NaN too
        duration = math.nan
    start = pd.NaT if math.isnan(duration) else at - pd.Timedelta(seconds=duration)
    anchor = f"close@{iso(at)}" if pd.isna(start) else f"open@{iso(start)}"
    closed = _Session(_session_id(device, app, anchor), start, at, False)
    return closed, _session_fields(closed, foreground=duration, flag=flag)


def _session_fields(session: _Session | None, foreground: float = math.nan, flag: str | None = None) -> dict:
    return {
        "session_id": session.session_id if session else None,
        "session_start": session.start if session else pd.NaT,
        "session_end": session.end if session else pd.NaT,
        "foreground_seconds": foreground,
        "session_open": bool(session and session.is_open),
        "session_flag": flag,
    }


def _session_id(device_id: str, app_identifier: str, anchor: str) -> str:
    """Deterministic, so re-running a window writes the same ids (uuid5 of device, app and start)."""
    return str(uuid.uuid5(_SESSION_NAMESPACE, f"{device_id}|{app_identifier}|{anchor}"))


def _carried_sessions(open_sessions: pd.DataFrame | None) -> dict[tuple[str, str], _Session]:
    """Session state per (device_id, app_identifier) from the last enriched row of earlier windows."""
    if open_sessions is None or open_sessions.empty:
        return {}
    needed = ("device_id", "app_identifier", "recorded_at", "session_id", "session_start", "session_end",
              "session_open")
    carry = with_columns(open_sessions, needed)
    carry = carry.assign(**{c: utc(carry[c]) for c in ("recorded_at", "session_start", "session_end")})
    carry = carry.sort_values("recorded_at").groupby(["device_id", "app_identifier"]).tail(1)
    state = {}
    for row in carry.to_dict("records"):
        if pd.isna(row["session_id"]):
            continue
        is_open = bool(row["session_open"]) if not pd.isna(row["session_open"]) else False
        state[(row["device_id"], row["app_identifier"])] = _Session(
            row["session_id"], row["session_start"], pd.NaT if is_open else row["session_end"], is_open
        )
    return state
