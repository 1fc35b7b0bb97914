"""Motion: 5 s accelerometer windows with steps, and significant-motion events (docs/flows/motion.md).

`motion_windows` is stage `data_aggregation` (docs/flows/motion.md#windows: 5 s windows, 1 s
overlap, mean, std, magnitude, peak frequency; plus the step counter (docs/flows/motion.md#steps)
and the activity model's features); `significant_motion` is stage `significant_motion_detection`
(docs/flows/motion.md#significant-motion).

Both read one partition's samples plus a `tail` of the device's earlier samples, and both give the
same rows however the samples are split across partitions: a window or event is a function of the
samples in a fixed span of event time only, and each is emitted by exactly one partition.
Samples are taken per device in event-time order; a sample repeated (same device and
`recorded_at`, the raw table's key) counts once.
"""

from loom_assets.stages.motion.rows import (
    EVENT_DTYPES,
    SAMPLE_COLUMNS,
    WINDOW_DTYPES,
    FeatureFn,
)
from loom_assets.stages.motion.rules import (
    ACTIVITY_CONFIDENCE,
    MOTION_CONFIDENCE,
    MotionRules,
)
from loom_assets.stages.motion.significant import (
    activity_type,
    motion_type,
    significant_motion,
    zero_crossings,
)
from loom_assets.stages.motion.steps import count_steps
from loom_assets.stages.motion.windows import motion_windows
