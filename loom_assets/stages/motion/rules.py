"""The motion flow's rules, and the confidence of each motion and activity type."""

from __future__ import annotations

from dataclasses import dataclass

_US = 1_000_000  # microseconds per second: all event-time arithmetic is in integer µs


@dataclass(frozen=True)
class MotionRules:
    """Every number of the motion flow, with its reason. Bump `version` when one changes."""

    version: str = "1"

    # -- windows (docs/flows/motion.md#windows) --
    # window_size_ms 5000, overlap_ms 1000: a window starts every 4 s, on a grid of multiples of
    # 4 s since the epoch, so window boundaries do not depend on where a partition starts. Steps
    # are counted in the middle 4 s of each window (half of each overlap), so they add up.
    window_seconds: float = 5.0
    overlap_seconds: float = 1.0
    # Every window is resampled to 50 Hz by linear interpolation before its spectrum, steps and
    # features: docs/flows/motion.md#windows sizes a window at 250 samples = 50 Hz, the step counter
    # (docs/flows/motion.md#steps) assumes 50 Hz, and the activity model is trained at 50 Hz.
    resample_hz: float = 50.0
    # Fewer samples than this, or a hole longer than `max_gap_seconds` (window edges included),
    # and a window gets no peak frequency, step count or features (only its plain statistics):
    # 40 = 5 s at 8 Hz, the mobile default of 10 Hz (docs/messages.md#sampling-rates) with 20 % of
    # samples lost, still above the 6 Hz needed to see the 3 Hz end of the step band. A 0.5 s hole
    # is one step at 2 steps/s: longer, and interpolation would draw a straight line over a step.
    min_samples: int = 40
    max_gap_seconds: float = 0.5
    # The spectrum is zero-padded to 8x the window (0.025 Hz bins instead of 0.2 Hz) and
    # Hann-tapered, so the peak frequency of a steady rhythm is read to a few hundredths of a Hz.
    spectrum_padding: int = 8

    # -- steps (docs/flows/motion.md#steps) --
    # 2nd-order Butterworth band-pass 0.5-3.0 Hz on the magnitude minus its mean: 30-180 steps/min,
    # walking to running cadence. Applied forward and backward (zero phase) so peaks stay in place.
    step_band_hz: tuple[float, float] = (0.5, 3.0)
    step_filter_order: int = 2
    # find_peaks(height=1.5, distance=fs/3): a step is a filtered peak of at least 1.5 m/s², and
    # steps are at least 1/3 s apart (at most 3 steps/s, a sprint).
    step_peak_height: float = 1.5
    step_min_interval_seconds: float = 1.0 / 3.0

    # -- significant motion (docs/flows/motion.md#significant-motion) --
    # m = |‖a‖ - g|, g the standard gravity (Loom v2's code used 9.8).
    gravity: float = 9.80665
    # A sample with m >= 2.0 m/s² is a "crossing" (Loom v2's threshold; its design's 0.1 g ≈ 1 m/s² was the
    # design value, the code's 2.0 is what ran and keeps walking-level jiggle out).
    motion_threshold: float = 2.0
    # docs/flows/motion.md#significant-motion: min_duration_ms 500 (first to last crossing),
    # debounce_ms 2000 (crossings less than 2 s apart are one event).
    min_event_seconds: float = 0.5
    debounce_seconds: float = 2.0
    # An event is cut after 30 s so a long walk or drive becomes a series of events that are
    # emitted as they happen (Loom v2's activity classifier looked back 120 s and spoke every
    # 60 s: it sees at least two events of an ongoing motion).
    max_event_seconds: float = 30.0
    # Motion and activity type are judged on the event plus 1 s either side: Loom v2 judged a 2 s
    # buffer, which is exactly what an instantaneous event gets. Loom v2's buffer-relative numbers
    # are turned into time: its "first/last quarter" is the first/last 0.5 s of the span,
    # zero crossings are counted per 2 s, "peak + 5 samples" at 100 Hz is 0.05 s after the peak,
    # and "peak < n - 10" is at least 0.1 s of samples after the peak.
    context_seconds: float = 1.0
    quarter_seconds: float = 0.5
    zero_crossing_seconds: float = 2.0
    # docs/flows/motion.md#significant-motion: motion_type thresholds (m/s², or zero crossings of
    # m - mean(m) per 2 s), first match wins.
    sudden_change: float = 3.0           # |last-quarter mean - first-quarter mean| >
    fall_peak: float = 8.0               # max m >
    fall_after_seconds: float = 0.05     # ... and the mean after peak + this
    fall_min_after_seconds: float = 0.1  # (over at least this long)
    fall_after_mean: float = 1.0         # ... is <
    shake_std: float = 2.0               # std >
    shake_crossings: float = 10.0        # and zc >
    walking_crossings: tuple[float, float] = (5.0, 15.0)  # open interval
    walking_mean: tuple[float, float] = (1.0, 3.0)        # open interval
    running_crossings: float = 15.0      # zc >
    running_mean: float = 3.0            # mean >
    vehicle_crossings: float = 5.0       # zc <
    vehicle_mean: tuple[float, float] = (0.5, 2.0)        # open interval
    # docs/flows/motion.md#significant-motion: activity_type thresholds on the same span (the code's
    # LOOM_ACTIVITY_* defaults).
    stationary_mean: float = 0.5
    walking_activity_mean: float = 2.0
    walking_activity_std: float = 0.5
    running_activity_mean: float = 5.0
    running_activity_std: float = 1.0
    vehicle_activity_mean: float = 1.0
    vehicle_activity_std: float = 0.5

    @property
    def step_seconds(self) -> float:
        """Seconds between window starts (4 s)."""
        return self.window_seconds - self.overlap_seconds

    @property
    def tail_seconds(self) -> float:
        """Seconds of a device's earlier samples `motion_windows` needs: one window (5 s)."""
        return self.window_seconds

    @property
    def event_tail_seconds(self) -> float:
        """Seconds of a device's earlier samples `significant_motion` needs: the longest event
        that can still be open, with its context on both sides (30 + 2 x 1 = 32 s)."""
        return self.max_event_seconds + 2 * self.context_seconds


# docs/flows/motion.md#significant-motion: confidences, by label.
MOTION_CONFIDENCE: dict[str, float] = {
    "sudden_start": 0.8, "sudden_stop": 0.8, "fall": 0.9, "shake": 0.7, "walking": 0.7,
    "running": 0.7, "vehicle": 0.6, "unknown": 0.5,
}
ACTIVITY_CONFIDENCE: dict[str, float] = {
    "stationary": 0.9, "walking": 0.7, "running": 0.7, "vehicle": 0.6, "unknown": 0.5,
}
