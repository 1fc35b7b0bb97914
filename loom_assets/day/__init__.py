"""The day page: `loom serve` (and `loom dev`, beside Dagster) serve it (docs/day.md)."""

from __future__ import annotations

import threading

DEFAULT_PORT = 3001


def server(database_url: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, dagster_url: str,
           tile_url: str):
    """A uvicorn server of the day page (call `.run()`, or `serve_in_background`)."""
    import uvicorn

    from loom_assets.day.app import create_app

    app = create_app(database_url, dagster_url=dagster_url, tile_url=tile_url)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))


def serve_in_background(day_server) -> threading.Thread:
    """Run `day_server` in a daemon thread (as `loom dev` does beside Dagster); its
    `should_exit = True` stops it."""
    thread = threading.Thread(target=day_server.run, name="loom-day", daemon=True)
    thread.start()
    return thread
