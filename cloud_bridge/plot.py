"""PNG plot of the contributing sensors around the alert, for desks that take attachments.

Rendered in a delivery worker, never on the MQTT thread (the hot path), and matplotlib is imported
only on first use with the non-interactive Agg backend, so a bridge that never attaches plots never
pays for it. The series come from ``AlertEvent.recent``.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime

from pdm_common.contracts import AlertEvent

__all__ = ["render_plot"]

_LOCK = threading.Lock()
"""pyplot keeps global state; one render at a time keeps figures from mixing across workers."""

MAX_PANELS = 4
"""Four stacked panels stay legible at the 800x(200 per panel) px the desks show inline."""


def render_plot(alert: AlertEvent) -> bytes | None:
    """The PNG bytes, or None when the alert carries no recent series."""
    series = [s for s in alert.recent if s.points][:MAX_PANELS]
    if not series:
        return None
    with _LOCK:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(series), 1, figsize=(8, 2 * len(series)), sharex=True, squeeze=False)
        try:
            for ax, s in zip(axes[:, 0], series, strict=True):
                times = [datetime.fromtimestamp(ms / 1000, tz=UTC) for ms, _ in s.points]
                ax.plot(times, [v for _, v in s.points], linewidth=1.2, label=s.metric)
                if s.expected is not None:
                    ax.axhline(s.expected, color="grey", linestyle="--", linewidth=1, label="expected")
                ax.axvline(alert.first_seen, color="red", linewidth=1, label="alert")
                ax.set_ylabel(s.metric, fontsize=8)
                ax.legend(loc="upper left", fontsize=7)
            axes[0, 0].set_title(f"{alert.asset}: {alert.probable_fault.code} (UTC)", fontsize=10)
            fig.autofmt_xdate()
            buf = io.BytesIO()
            # No Software/date metadata: the same alert renders to the same bytes.
            fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
            return buf.getvalue()
        finally:
            plt.close(fig)
