"""The app lifecycle generator: foreground bursts, switches, terminations and crashes."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from loom_assets.demo.constants import APP_EVENTS_PER_S, APP_LIFECYCLE_TOPIC
from loom_assets.demo.day import DayPlan
from loom_assets.demo.messages import DemoMessage, rest_message
from loom_assets.demo.people import DemoDevice
from loom_assets.demo.streams import _stream_rng

# ---- apps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    app_id: str
    name: str | None  # app_name is optional (docs/messages.md#payload-fields); obscure apps may not report one
    weight: float  # how often this person uses it
    category: str | None = None  # Android ApplicationInfo category label (docs/flows/app_lifecycle.md#categories)
    contexts: tuple[str, ...] = ()  # activities where the app is used much more


ANDROID_APPS = (
    App("com.whatsapp", "WhatsApp", 10, "SOCIAL"),
    App("com.google.android.gm", "Gmail", 7, "PRODUCTIVITY", ("work",)),
    App("com.android.chrome", "Chrome", 8),
    App("com.Slack", "Slack", 6, "PRODUCTIVITY", ("work", "coffee")),
    App("com.microsoft.teams", "Microsoft Teams", 3, "PRODUCTIVITY", ("work",)),
    App("com.spotify.music", "Spotify", 4, "AUDIO", ("drive", "walk")),
    App("com.google.android.apps.maps", "Maps", 2, "MAPS", ("drive", "walk")),
    App("com.instagram.android", "Instagram", 6, "SOCIAL", ("evening", "morning")),
    App("com.google.android.youtube", "YouTube", 4, "VIDEO", ("evening",)),
    App("com.reddit.frontpage", "Reddit", 4, "SOCIAL", ("evening", "coffee")),
    App("org.telegram.messenger", "Telegram", 2, "SOCIAL"),
    App("com.google.android.apps.messaging", "Messages", 4),
    App("com.google.android.calendar", "Calendar", 2, "PRODUCTIVITY", ("work", "morning")),
    App("com.nytimes.android", "NYTimes", 2, "NEWS", ("morning",)),
    App("com.google.android.GoogleCamera", "Camera", 1, "IMAGE"),
    App("com.supercell.clashroyale", "Clash Royale", 2, "GAME", ("evening",)),
    App("com.duolingo", "Duolingo", 1),
    App("io.homeassistant.companion.android", "Home Assistant", 1, None, ("evening", "morning")),
    App("com.termux", "Termux", 0.5),
    App("net.acme.fieldkit.debug", None, 0.3),
)
IOS_APPS = (
    App("net.whatsapp.WhatsApp", "WhatsApp", 10),
    App("com.apple.MobileSMS", "Messages", 8),
    App("com.apple.mobilesafari", "Safari", 8),
    App("com.tinyspeck.chatlyio", "Slack", 6, None, ("work", "coffee")),
    App("com.microsoft.skype.teams", "Microsoft Teams", 3, None, ("work",)),
    App("com.google.Gmail", "Gmail", 6, None, ("work",)),
    App("com.spotify.client", "Spotify", 4, None, ("drive", "walk")),
    App("com.apple.Maps", "Maps", 2, None, ("drive", "walk")),
    App("com.burbn.instagram", "Instagram", 6, None, ("evening", "morning")),
    App("com.google.ios.youtube", "YouTube", 3, None, ("evening",)),
    App("com.apple.mobilecal", "Calendar", 2, None, ("work", "morning")),
    App("com.apple.camera", "Camera", 1),
    App("com.strava.stravaride", "Strava", 0.5),
    App("de.twoknights.tinyapp", None, 0.3),
)
MACOS_APPS = (
    App("com.apple.Safari", "Safari", 6),
    App("com.google.Chrome", "Google Chrome", 9),
    App("com.tinyspeck.slackmacgap", "Slack", 9),
    App("com.microsoft.teams2", "Microsoft Teams", 4, None, ("work",)),
    App("com.microsoft.VSCode", "Visual Studio Code", 9, None, ("work", "coffee")),
    App("com.apple.Terminal", "Terminal", 6, None, ("work", "coffee")),
    App("com.apple.mail", "Mail", 3),
    App("com.apple.finder", "Finder", 3),
    App("us.zoom.xos", "zoom.us", 2, None, ("work",)),
    App("com.figma.Desktop", "Figma", 2, None, ("work",)),
    App("notion.id", "Notion", 3),
    App("com.spotify.client", "Spotify", 2),
    App("com.apple.iCal", "Calendar", 2, None, ("work",)),
    App("com.1password.1password", "1Password", 1),
    App("com.postmanlabs.mac", "Postman", 1, None, ("work",)),
    App("com.lwouis.alt-tab-macos", "AltTab", 0.5),
    App("local.build.loom-menubar", None, 0.3),
)
APPS_BY_KIND = {"android": ANDROID_APPS, "iphone": IOS_APPS, "macbook": MACOS_APPS}

CONTEXT_BOOST = 4.0  # weight multiplier for apps typical of the current activity
P_RETURN_TO_PREVIOUS = 0.35  # ping-pong between two apps
P_TERMINATE = 0.12  # user swipes away / quits after backgrounding
P_CRASH = 0.01  # per foreground session (brief: ~1 %)
MAX_RUNNING = {"phone": 6, "laptop": 12}  # the OS (phone) or the user (laptop) drops the oldest
# Time in the foreground: lognormal, median 1 s with a heavy tail (10 % over 4.7 s, 1 % over
# 16 s), so a burst runs at ~0.8 ev/s and quiet gaps bring the average down to the target.
FOREGROUND_MEDIAN_S = {"phone": 1.0, "laptop": 1.0}
FOREGROUND_SIGMA = 1.2
BURST_MEDIAN_S = {"phone": 45.0, "laptop": 240.0}  # screen-on / at-keyboard spells
BURST_SIGMA = 0.8


class _AppSimulator:
    """Coherent app sessions: launch → foreground → background (→ terminate), rare crashes."""

    def __init__(self, device: DemoDevice, plan: DayPlan, rng: random.Random, start: datetime):
        self.device, self.plan, self.rng = device, plan, rng
        self.apps = APPS_BY_KIND[device.kind]
        self.running: dict[str, datetime] = {}  # app_id -> launch time
        self.last_used: dict[str, datetime] = {}
        self.out: list[tuple[datetime, dict[str, Any]]] = []
        for app in rng.sample(self.apps, 4):  # apps already running before the demo starts
            self.running[app.app_id] = start - timedelta(seconds=rng.uniform(600, 8 * 3600))
            self.last_used[app.app_id] = self.running[app.app_id]

    def _event(self, t: datetime, app: App, event_type: str, duration: float | None = None):
        metadata = {"category": app.category} if app.category else {}
        self.out.append((t, {
            "app_identifier": app.app_id,
            "app_name": app.name,
            "event_type": event_type,
            "duration_seconds": None if duration is None else int(round(duration)),
            "metadata": metadata,
        }))

    def _pick(self, t: datetime, current: App | None, previous: App | None) -> App:
        if previous is not None and previous is not current and self.rng.random() < P_RETURN_TO_PREVIOUS:
            return previous
        activity = self.plan.at(t).activity
        candidates = [a for a in self.apps if a is not current]
        weights = [a.weight * (CONTEXT_BOOST if activity in a.contexts else 1.0) for a in candidates]
        return self.rng.choices(candidates, weights)[0]

    def _bring_to_front(self, t: datetime, app: App) -> tuple[datetime, datetime]:
        if app.app_id not in self.running:
            if len(self.running) >= MAX_RUNNING[self.device.family]:
                self._drop_oldest(t)
            self.running[app.app_id] = t
            self._event(t, app, "launch")
            t += timedelta(seconds=self.rng.uniform(0.3, 2.5))  # cold start
        self._event(t, app, "foreground")
        return t, t

    def _drop_oldest(self, t: datetime) -> None:
        oldest = min(self.running, key=lambda a: self.last_used.get(a, self.running[a]))
        launched = self.running.pop(oldest)
        if self.device.family == "laptop":  # the user quits it (a phone OS kills silently)
            app = next(a for a in self.apps if a.app_id == oldest)
            self._event(t, app, "terminate", (t - launched).total_seconds())

    def _leave(self, t: datetime, app: App, since: datetime) -> datetime:
        """End a foreground session: background (maybe then terminate), or crash.
        Returns the time of the last event emitted."""
        self.last_used[app.app_id] = t
        if self.rng.random() < P_CRASH:
            self._event(t, app, "crash")
            self.running.pop(app.app_id, None)
            return t
        self._event(t, app, "background", (t - since).total_seconds())
        if self.rng.random() < P_TERMINATE:
            t += timedelta(seconds=self.rng.uniform(0.5, 4.0))
            launched = self.running.pop(app.app_id, since)
            self._event(t, app, "terminate", (t - launched).total_seconds())
        return t

    def burst(self, t: datetime, until: datetime) -> datetime:
        """One screen-on spell of app switching starting at ``t``; returns when it ended."""
        family = self.device.family
        current = previous = None
        since = t
        while True:
            nxt = self._pick(t, current, previous)
            if current is not None:
                t = self._leave(t, current, since)
                t += timedelta(seconds=self.rng.uniform(0.2, 1.2))
            previous, current = current, nxt
            t, since = self._bring_to_front(t, current)
            dwell = self.rng.lognormvariate(math.log(FOREGROUND_MEDIAN_S[family]), FOREGROUND_SIGMA)
            t += timedelta(seconds=min(dwell, 900.0))
            if t >= until:
                break
        return self._leave(t, current, since)


def app_lifecycle_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``os.events.app_lifecycle.raw`` (flat REST, docs/messages.md#payload-fields): bursts of app
    switching whose long-run average is ``APP_EVENTS_PER_S × intensity`` of the current activity."""
    rng = _stream_rng(seed, device, APP_LIFECYCLE_TOPIC)
    sim = _AppSimulator(device, plan, rng, start)
    family = device.family
    t = start + timedelta(seconds=rng.uniform(0, 60))  # a first burst right away
    while t < end:
        intensity = plan.intensity(family, t)
        if intensity <= 0:  # lid closed: wait for the next segment where the device is used
            nxt = plan.next_active(family, t)
            if nxt is None or nxt >= end:
                break
            t = nxt + timedelta(seconds=rng.uniform(5, 120))
            continue
        seg_end = plan.at(t).end
        length = rng.lognormvariate(math.log(BURST_MEDIAN_S[family]), BURST_SIGMA)
        until = min(t + timedelta(seconds=min(length, 1800.0)), seg_end)
        n_before = len(sim.out)
        burst_end = sim.burst(t, until)
        n_events = len(sim.out) - n_before
        for ts, payload in sorted(sim.out, key=lambda e: e[0]):
            if start <= ts < end:
                yield rest_message(APP_LIFECYCLE_TOPIC, device.device_id, ts, payload, rng)
        sim.out.clear()
        # Quiet gap sized so that events / (burst + gap) averages the target rate.
        burst_s = (burst_end - t).total_seconds()
        gap = max(n_events / (APP_EVENTS_PER_S * intensity) - burst_s, 3.0) * rng.uniform(0.5, 1.5)
        t = burst_end + timedelta(seconds=gap)
