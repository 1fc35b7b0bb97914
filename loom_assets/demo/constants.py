"""Wire-format constants of the demo's messages and the rates its devices send at."""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Wire-format constants
# --------------------------------------------------------------------------------------------

APP_LIFECYCLE_TOPIC = "os.events.app_lifecycle.raw"  # SPEC §3 / §4.2
SENSOR_POWER_TOPIC = "device.sensor.power.raw"  # SPEC §1.10: what POST /sensor/power publishes to
STATE_POWER_TOPIC = "device.state.power.raw"  # SPEC §2.2: unified route, message_type power_state
WIFI_TOPIC = "device.network.wifi.raw"  # SPEC §1.11 / §3
GPS_TOPIC = "device.sensor.gps.raw"  # SPEC §1.2 / §3
ACCELEROMETER_TOPIC = "device.sensor.accelerometer.raw"  # SPEC §1.4 / §3
SCREENSHOT_TOPIC = "device.image.screenshot.raw"  # SPEC §1.5 / §3
CAMERA_TOPIC = "device.image.camera.raw"  # SPEC §1.9 / §3

DEMO_TOPICS: tuple[str, ...] = (
    APP_LIFECYCLE_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
    GPS_TOPIC,
    ACCELEROMETER_TOPIC,
    SCREENSHOT_TOPIC,
    CAMERA_TOPIC,
)

SCHEMA_VERSION = "1.0"  # SPEC §2.1 / §2.2 default
SERVICES_ENCOUNTERED = ("ingestion-api", "kafka-producer")  # SPEC §2.1 example
PRODUCER_SERVICE = "ingestion-api"  # SPEC §2.1 header producer_service
POWER_STATE_MESSAGE_TYPE = "power_state"  # SPEC §2.2 routing → device.state.power.raw
# Server receive time (`timestamp`) trails the client's `recorded_at` by network + API latency.
RECEIVE_LATENCY_MS = (60.0, 650.0)

# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------

GPS_INTERVAL_S = 30.0  # SPEC §5.6 mobile default GPS: 30 s
MOBILE_POWER_INTERVAL_S = 60.0  # SPEC §5.6 mobile default battery: 60 s
LAPTOP_POWER_INTERVAL_S = 10.0  # SPEC §1.10 power_state 0.1 ev/s ("every 10 s")
WIFI_INTERVAL_S = 120.0  # SPEC §5.6 mobile default network: 120 s (only while connected)
# SPEC §1.3 sizes the flow at 2 ev/s (peak x10). We average 0.5 ev/s per device at full activity
# (intensity 1.0, see ACTIVITY_INTENSITY), in screen-on bursts of ~0.6 ev/s with quieter gaps.
APP_EVENTS_PER_S = 0.5
TIMER_JITTER_S = (-0.3, 0.7)  # periodic client timers fire a little late, sometimes early
