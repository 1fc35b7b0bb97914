"""Wire-format constants of the demo's messages and the rates its devices send at."""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Wire-format constants
# --------------------------------------------------------------------------------------------

APP_LIFECYCLE_TOPIC = "os.events.app_lifecycle.raw"  # docs/flows/app_lifecycle.md#kafka-topics
SENSOR_POWER_TOPIC = "device.sensor.power.raw"  # docs/flows/power_state.md: what POST /sensor/power publishes to
STATE_POWER_TOPIC = "device.state.power.raw"  # docs/messages.md#unified-envelope: type power_state
WIFI_TOPIC = "device.network.wifi.raw"  # docs/flows/network_events.md
GPS_TOPIC = "device.sensor.gps.raw"  # docs/flows/location.md
ACCELEROMETER_TOPIC = "device.sensor.accelerometer.raw"  # docs/flows/motion.md
SCREENSHOT_TOPIC = "device.image.screenshot.raw"  # docs/flows/screenshot_ocr.md
CAMERA_TOPIC = "device.image.camera.raw"  # docs/flows/camera_vision.md
AUDIO_TOPIC = "device.audio.raw"  # docs/flows/audio.md#kafka-topics
CALENDAR_TOPIC = "external.calendar.events.raw"  # docs/flows/calendar.md#kafka-topics

DEMO_TOPICS: tuple[str, ...] = (
    APP_LIFECYCLE_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
    GPS_TOPIC,
    ACCELEROMETER_TOPIC,
    SCREENSHOT_TOPIC,
    CAMERA_TOPIC,
    AUDIO_TOPIC,
    CALENDAR_TOPIC,
)

SCHEMA_VERSION = "1.0"  # docs/messages.md#rest-envelope, docs/messages.md#unified-envelope
SERVICES_ENCOUNTERED = ("ingestion-api", "kafka-producer")  # docs/messages.md#rest-envelope
PRODUCER_SERVICE = "ingestion-api"  # docs/messages.md#rest-envelope
POWER_STATE_MESSAGE_TYPE = "power_state"  # docs/messages.md#unified-envelope → device.state.power.raw
# Server receive time (`timestamp`) trails the client's `recorded_at` by network + API latency.
RECEIVE_LATENCY_MS = (60.0, 650.0)

# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------

GPS_INTERVAL_S = 30.0  # docs/messages.md#sampling-rates GPS: 30 s
MOBILE_POWER_INTERVAL_S = 60.0  # docs/messages.md#sampling-rates battery: 60 s
LAPTOP_POWER_INTERVAL_S = 10.0  # docs/messages.md#sampling-rates: laptops every 10 s
WIFI_INTERVAL_S = 120.0  # docs/messages.md#sampling-rates network: 120 s (only while connected)
# Loom v2 sized the flow at 2 ev/s (peak x10). We average 0.5 ev/s per device at full activity
# (intensity 1.0, see ACTIVITY_INTENSITY), in screen-on bursts of ~0.6 ev/s with quieter gaps.
APP_EVENTS_PER_S = 0.5
TIMER_JITTER_S = (-0.3, 0.7)  # periodic client timers fire a little late, sometimes early
