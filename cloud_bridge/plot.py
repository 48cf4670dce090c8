"""PNG plot of the contributing sensors around the alert, for desks that take attachments.

What a technician needs to read on a phone: each panel one sensor with its name and unit, the
expected value dashed, the fault's failure threshold drawn where it applies, stretches where the
machine was stopped (no samples for far longer than the sampling interval) shaded, and the alert's
start, the service visit and a reopen marked; times in the customer's time zone. An alert that began
before the plotted window is marked at the window's left edge (with its time), never outside the data.

Rendered in a delivery worker, never on the MQTT thread (the hot path), and matplotlib is imported
only on first use with the non-interactive Agg backend, so a bridge that never attaches plots never
pays for it. The series come from ``AlertEvent.recent``.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from cloud_bridge.vocabulary import BUILTIN_VOCABULARY, Vocabulary
from pdm_common.contracts import AlertEvent

__all__ = ["PlotMarks", "render_plot", "stopped_spans"]

_LOCK = threading.Lock()
"""pyplot keeps global state; one render at a time keeps figures from mixing across workers."""

MAX_PANELS = 4
"""Four stacked panels stay legible at the 800x(200 per panel) px the desks show inline."""

STOP_GAP_FACTOR = 5
"""A gap of more than five sampling intervals is the machine stopped (or silent), not jitter."""


@dataclass(frozen=True, slots=True)
class PlotMarks:
    """Moments in the alert's life to mark on the plot, and the zone its clock is read in."""

    serviced_at: datetime | None = None
    reopened_at: datetime | None = None
    zone: ZoneInfo | None = None


def stopped_spans(times_ms: list[int]) -> list[tuple[int, int]]:
    """Gaps in a series far longer than its typical sampling interval: ``(start_ms, end_ms)``.

    >>> stopped_spans([0, 60_000, 120_000, 1_000_000, 1_060_000])
    [(120000, 1000000)]
    """
    if len(times_ms) < 3:
        return []
    steps = sorted(b - a for a, b in pairwise(times_ms))
    typical = steps[len(steps) // 2] or 1
    return [(a, b) for a, b in pairwise(times_ms) if b - a > STOP_GAP_FACTOR * typical]


def render_plot(alert: AlertEvent, marks: PlotMarks | None = None,
                vocabulary: Vocabulary = BUILTIN_VOCABULARY) -> bytes | None:
    """The PNG bytes, or None when the alert carries no recent series.

    Args:
        alert: the alert with its recent series.
        marks: moments to mark and the customer's time zone.
        vocabulary: names, units and failure thresholds of the alert's kind (built-in and declared kinds).
    """
    marks = marks or PlotMarks()
    zone = marks.zone or ZoneInfo("UTC")
    series = [s for s in alert.recent if s.points][:MAX_PANELS]
    if not series:
        return None
    threshold = vocabulary.failure_threshold(alert.probable_fault.code, alert.kind)
    with _LOCK:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(series), 1, figsize=(8, 2 * len(series)), sharex=True, squeeze=False)
        try:
            first_ms = min(ms for s in series for ms, _ in s.points)
            last_ms = max(ms for s in series for ms, _ in s.points)
            window_start = datetime.fromtimestamp(first_ms / 1000, tz=UTC)
            window_end = datetime.fromtimestamp(last_ms / 1000, tz=UTC)
            for ax, s in zip(axes[:, 0], series, strict=True):
                words = vocabulary.metric_words(s.metric, alert.kind, alert.asset)
                times = [datetime.fromtimestamp(ms / 1000, tz=UTC) for ms, _ in s.points]
                ax.plot(times, [v for _, v in s.points], linewidth=1.2, label=words.name)
                for a, b in stopped_spans([ms for ms, _ in s.points]):
                    ax.axvspan(datetime.fromtimestamp(a / 1000, tz=UTC), datetime.fromtimestamp(b / 1000, tz=UTC),
                               color="0.85", label="stopped / no data")
                if s.expected is not None:
                    ax.axhline(s.expected, color="grey", linestyle="--", linewidth=1, label="expected")
                if threshold is not None and threshold.metric == s.metric:
                    ax.axhline(threshold.value, color="darkred", linewidth=1.5,
                               label=f"failure: {words.value(threshold.value)}")
                _mark(ax, alert.first_seen, window_start, window_end, color="red", label="alert", zone=zone)
                if marks.serviced_at is not None:
                    _mark(ax, marks.serviced_at, window_start, window_end, color="green", label="service visit",
                          zone=zone)
                if marks.reopened_at is not None:
                    _mark(ax, marks.reopened_at, window_start, window_end, color="purple", label="reopened", zone=zone)
                ax.set_ylabel(f"{words.name} ({words.unit})" if words.unit else words.name, fontsize=8)
                handles, labels = ax.get_legend_handles_labels()
                unique = dict(zip(labels, handles, strict=True))
                ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7)
            formatter = mdates.DateFormatter("%d %b %H:%M", tz=zone)  # type: ignore[no-untyped-call]
            axes[-1, 0].xaxis.set_major_formatter(formatter)
            axes[0, 0].set_title(f"{alert.asset}: {alert.probable_fault.code} ({zone.key})", fontsize=10)
            fig.autofmt_xdate()
            buf = io.BytesIO()
            # No Software/date metadata: the same alert renders to the same bytes.
            fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
            return buf.getvalue()
        finally:
            plt.close(fig)


def _mark(ax: object, when: datetime, start: datetime, end: datetime, *, color: str, label: str,
          zone: ZoneInfo) -> None:
    """A vertical line at ``when``, clipped to the window (labelled with its time when it lies outside)."""
    margin = timedelta(seconds=1)
    if when < start - margin:
        label = f"{label} {when.astimezone(zone):%d %b %H:%M} (before the window)"
        when = start
    elif when > end + margin:
        return
    ax.axvline(when, color=color, linewidth=1, label=label)  # type: ignore[attr-defined]
