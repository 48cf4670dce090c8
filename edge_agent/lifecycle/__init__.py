"""Alert lifecycle: the pure state machine of DESIGN.md section 5."""

from edge_agent.lifecycle.machine import AlertTrack, Emit, Phase, Summary, TrackPolicy

__all__ = ["AlertTrack", "Emit", "Phase", "Summary", "TrackPolicy"]
