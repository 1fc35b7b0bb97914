"""The WiFi generator: access points at home, at work and at the coffee shop."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from loom_assets.demo.constants import WIFI_INTERVAL_S, WIFI_TOPIC
from loom_assets.demo.day import DayPlan
from loom_assets.demo.messages import DemoMessage, rest_message
from loom_assets.demo.people import (
    COFFEE_SHOP,
    DEVICE_KINDS,
    LOCAL_TZ,
    WORK,
    DemoDevice,
)
from loom_assets.demo.streams import _stream_rng, _ticks

# ---- wifi ------------------------------------------------------------------------------------

MOBILE_SIGNAL_DBM = -50  # docs/flows/network_events.md#enriched: mobile WiFi readings carry a constant -50
UNKNOWN_SSID = "<unknown ssid>"  # docs/flows/network_events.md#enriched: Android without location permission
ANDROID_PLACEHOLDER_BSSID = "02:00:00:00:00:00"  # what Android reports alongside it
P_UNKNOWN_SSID = 0.03
HOTSPOT_AFTER = 0.4  # share of the coffee-shop stay before the laptop tethers to the phone


@dataclass(frozen=True)
class AccessPoint:
    bssid: str
    frequency: int  # MHz: 2412… (2.4 GHz) or 5180… (5 GHz)

    @property
    def channel(self) -> int:
        f = self.frequency
        return (f - 2407) // 5 if f < 5000 else (f - 5000) // 5


@dataclass(frozen=True)
class Network:
    ssid: str
    security: str
    access_points: tuple[AccessPoint, ...]  # several at work (roaming)
    ip_pattern: str  # DHCP range, "{}" = a random octet
    laptop_dbm: tuple[float, float]  # mean and spread of a laptop's RSSI there

    def lease(self, rng: random.Random) -> str:
        return self.ip_pattern.format(*(rng.randrange(2, 254) for _ in range(self.ip_pattern.count("{}"))))


def _mac(rng: random.Random, oui: str) -> str:
    return oui + "".join(f":{rng.randrange(256):02x}" for _ in range(3))


def _networks(seed: int, person: int) -> dict[str, Network]:
    """The person's networks: home (dual-band), office (4 APs), coffee shop, phone hotspot."""
    rng = random.Random(f"loom-demo-wifi:{seed}:{person}")
    home_5ghz = _mac(rng, "a4:2b:b0")
    home_2ghz = home_5ghz[:-1] + f"{int(home_5ghz[-1], 16) ^ 1:x}"  # the router's other radio
    office = tuple(AccessPoint(_mac(rng, "70:3a:0e"), f) for f in (5180, 5220, 5745, 5805))
    if DEVICE_KINDS[(2 * person) % len(DEVICE_KINDS)] == "iphone":
        hotspot = "Sam\u2019s iPhone"  # iOS names the hotspot after the device
    else:
        hotspot = "Pixel_7823" if person == 0 else f"Pixel_{rng.randrange(1000, 9999)}"
    return {
        "home": Network(f"Valencia-{rng.randrange(10, 99)}", "WPA2",
                        (AccessPoint(home_5ghz, 5180), AccessPoint(home_2ghz, 2437)),
                        "192.168.1.{}", (-52, 6)),
        "work": Network("AcmeCorp", "WPA2-Enterprise", office, "10.20.{}.{}", (-61, 7)),
        "coffee": Network("Starbucks WiFi", "Open", (AccessPoint(_mac(rng, "00:1a:1e"), 2437),),
                          "172.31.{}.{}", (-72, 5)),
        "hotspot": Network(hotspot, "WPA2", (AccessPoint(_mac(rng, "da:a1:19"), 2412),),
                           "192.168.43.{}", (-39, 3)),
    }


def _network_for(device: DemoDevice, plan: DayPlan, t: datetime) -> tuple[str, int] | None:
    """(network key, access point index) the device is on at ``t``, or None if not connected."""
    seg = plan.at(t)
    if seg.place is None:
        return None  # on the road: phone on cellular, laptop in the bag
    if seg.place is COFFEE_SHOP:
        tethered = t >= seg.start + (seg.end - seg.start) * HOTSPOT_AFTER
        if device.family == "laptop":
            return ("hotspot", 0) if tethered else ("coffee", 0)
        return None if tethered else ("coffee", 0)  # a phone sharing its hotspot leaves WiFi
    if seg.place is WORK:
        return "work", 0 if device.family == "laptop" else 1  # desk vs. pocket (nearest AP)
    if device.family == "phone" and seg.activity == "sleep":
        return "home", 1  # 2.4 GHz radio reaches the bedroom better
    return "home", 0


def wifi_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.network.wifi.raw`` (flat, docs/messages.md#payload-fields) every 120 s while
    connected (docs/messages.md#sampling-rates). Phones report the constant -50 dBm
    (docs/flows/network_events.md#enriched); the laptop reports a real RSSI. iOS cannot read
    frequency/channel; Android sometimes hides the SSID (``<unknown ssid>``)."""
    rng = _stream_rng(seed, device, WIFI_TOPIC)
    nets = _networks(seed, device.person)
    leases: dict[tuple[str, date], str] = {}  # a fresh DHCP lease per network and day …
    home_ip = nets["home"].lease(rng)  # … except at home, where it stays put
    for t in _ticks(rng, start, end, WIFI_INTERVAL_S):
        where = _network_for(device, plan, t)
        if where is None:
            continue
        key, ap_index = where
        net = nets[key]
        if len(net.access_points) > 2 and rng.random() < 0.12:  # roamed to another AP
            ap_index = rng.randrange(len(net.access_points))
        ap = net.access_points[ap_index]
        if key == "home":
            ip = home_ip
        else:
            ip = leases.setdefault((key, t.astimezone(LOCAL_TZ).date()), net.lease(rng))
        ssid, bssid = net.ssid, ap.bssid
        frequency: float | None = float(ap.frequency)  # a float in the REST model (docs/messages.md#payload-fields)
        channel: int | None = ap.channel
        if device.kind == "iphone":  # iOS exposes neither
            frequency = channel = None
        elif device.kind == "android" and rng.random() < P_UNKNOWN_SSID:
            ssid, bssid = UNKNOWN_SSID, ANDROID_PLACEHOLDER_BSSID
        if device.family == "laptop":
            signal = int(round(rng.gauss(*net.laptop_dbm)))
        else:
            signal = MOBILE_SIGNAL_DBM
        payload = {
            "ssid": ssid,
            "bssid": bssid,
            "signal_strength": signal,
            "frequency": frequency,
            "channel": channel,
            "security": net.security,
            "connected": True,
            "ip_address": ip,
        }
        yield rest_message(WIFI_TOPIC, device.device_id, t, payload, rng)
