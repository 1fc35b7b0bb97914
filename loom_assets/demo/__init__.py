"""Synthetic device events in the real Loom v2 wire formats (for ``loom replay --demo`` / ``loom dev``).

One simulated person per phone/laptop pair lives a San Francisco work day: asleep and at home,
a drive to work, work, an afternoon at a coffee shop near the office (the laptop tethers to the
phone's hotspot there after a while), back to work, a drive home, an evening at home.

Devices (index ``i``; kinds cycle Android phone, MacBook, iPhone, MacBook; person = ``i // 2``;
envelopes as in docs/messages.md#envelopes, rates as in docs/messages.md#sampling-rates):

==========================  =====================================  ===========================
topic                       envelope                               who / rate
==========================  =====================================  ===========================
os.events.app_lifecycle.raw flat REST                              all; bursts, ≈0.5 ev/s at
                                                                   full activity
device.sensor.power.raw     flat REST (``POST /sensor/power``)     phones; every 60 s
device.state.power.raw      unified ``power_state``                laptops; every 10 s
device.network.wifi.raw     flat REST                              all; every 120 s while
                                                                   connected
device.sensor.gps.raw       flat REST                              phones; every 30 s
device.sensor.accelerometer flat REST (x, y, z m/s², gravity       phones; 50 Hz moving,
.raw                        included)                              10 Hz still
device.image.screenshot.raw flat REST (PNG rendered with Pillow)   laptops; every 5 min open
device.image.camera.raw     flat REST (JPEG of scikit-image's      phones; now and then at the
                            photos)                                coffee shop and at home
==========================  =====================================  ===========================

The accelerometer follows the same day as the GPS: the phone lies still (and is picked up now
and then), walks with its person, climbs the office stairs, rides in the car's mount. At 50 Hz
while moving and 10 Hz while still a phone sends ~1 M samples a day (~12 msg/s on average,
50 msg/s at most); the default demo (one phone) stays under ~55 msg/s, two phones under ~105.

Generation is pure and reproducible: every (device, topic) stream has its own
``random.Random`` seeded from ``seed``, and the day plan depends only on seed, person and
date, so ``demo_messages(start, minutes, devices, seed)`` always yields the same bytes.
Only :func:`replay` talks to Kafka (through a producer handed in by the caller).
"""

# Names the module held before it became a package, which tests still reach through it.
from loom_assets.demo.accelerometer import _PhoneMotion, _us, accelerometer_stream
from loom_assets.demo.apps import (
    ANDROID_APPS,
    APPS_BY_KIND,
    BURST_MEDIAN_S,
    BURST_SIGMA,
    CONTEXT_BOOST,
    FOREGROUND_MEDIAN_S,
    FOREGROUND_SIGMA,
    IOS_APPS,
    MACOS_APPS,
    MAX_RUNNING,
    P_CRASH,
    P_RETURN_TO_PREVIOUS,
    P_TERMINATE,
    App,
    app_lifecycle_stream,
)
from loom_assets.demo.constants import (
    ACCELEROMETER_TOPIC,
    APP_EVENTS_PER_S,
    APP_LIFECYCLE_TOPIC,
    AUDIO_TOPIC,
    CALENDAR_TOPIC,
    CAMERA_TOPIC,
    DEMO_TOPICS,
    GPS_INTERVAL_S,
    GPS_TOPIC,
    LAPTOP_POWER_INTERVAL_S,
    MOBILE_POWER_INTERVAL_S,
    POWER_STATE_MESSAGE_TYPE,
    PRODUCER_SERVICE,
    RECEIVE_LATENCY_MS,
    SCHEMA_VERSION,
    SCREENSHOT_TOPIC,
    SENSOR_POWER_TOPIC,
    SERVICES_ENCOUNTERED,
    STATE_POWER_TOPIC,
    TIMER_JITTER_S,
    WIFI_INTERVAL_S,
    WIFI_TOPIC,
)
from loom_assets.demo.day import DayPlan, Segment
from loom_assets.demo.gps import GPS_ACCURACY_M, OUTDOOR_ACCURACY_M, gps_stream
from loom_assets.demo.media import (
    P_PHOTO,
    PHOTO_INTERVAL_S,
    PHOTO_SUBJECTS,
    SCREEN_SIZE,
    SCREENS,
    SCREENSHOT_INTERVAL_S,
    _screenshot_png,
    camera_stream,
    screenshot_stream,
)
from loom_assets.demo.messages import (
    DemoMessage,
    format_datetime,
    rest_message,
    unified_message,
)
from loom_assets.demo.motion import (
    _ACCEL_BLOCK,
    _ACCEL_STEP_US,
    ACCEL_BIAS,
    ACCEL_MOVING_HZ,
    ACCEL_NOISE,
    ACCEL_STILL_HZ,
    BUMPS_PER_M,
    CADENCE_HZ,
    DRIVE_MAX_ACCEL,
    GAIT_HARMONICS,
    GAIT_IRREGULARITY,
    GRAVITY,
    HANDLING_TRANSIENT,
    HANDLINGS_PER_H,
    HEEL_PHASE,
    HEEL_STRIKE,
    P_SHAKE,
    POCKET_SWING_RAD,
    ROAD_VIBRATION,
    SHAKE_PEAK,
    STAIRS_CADENCE,
    STAIRS_VERTICAL,
    STEP_ASYMMETRY,
    STEP_VERTICAL,
    WALK_GATE_MPS,
)
from loom_assets.demo.people import (
    ACTIVITY_INTENSITY,
    COFFEE_SHOP,
    COFFEE_WALK,
    COMMUTE_ROUTE,
    DEMO_REGIONS,
    DEVICE_KINDS,
    DRIVE_SPEED_MPS,
    HOME,
    LOCAL_TZ,
    UUID_RE,
    WALK_SPEED_MPS,
    WORK,
    DemoDevice,
    Place,
    demo_devices,
)
from loom_assets.demo.power import (
    BATTERY_WARMUP,
    CHARGE_HOLD_LEVEL,
    CHARGE_RATE,
    DRAIN,
    LAPTOP_STANDBY_DRAIN,
    NAV_EXTRA_DRAIN,
    PHONE_STANDBY_DRAIN,
    PLUG_IN_BELOW,
    THERMAL_LIMITS,
    laptop_power_stream,
    mobile_power_stream,
)
from loom_assets.demo.replay import demo_messages, replay
from loom_assets.demo.travel import (
    EARTH_RADIUS_M,
    Path,
    bearing_deg,
    haversine_m,
    travel_profile,
)
from loom_assets.demo.wifi import (
    ANDROID_PLACEHOLDER_BSSID,
    HOTSPOT_AFTER,
    MOBILE_SIGNAL_DBM,
    P_UNKNOWN_SSID,
    UNKNOWN_SSID,
    AccessPoint,
    Network,
    wifi_stream,
)
