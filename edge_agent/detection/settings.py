"""Tuning of the detection core and the alert lifecycle (``[detection]`` in the agent config).

Defaults assume one sample a minute per asset (failure-physics.md C4: heat pumps publish every
10-60 s) and the time scales of failure-physics.md section D: faults develop over days to weeks, so
the detector may take hours to be sure and still give days of lead time. Every default was chosen
by running ``bench/detection.py``; ``docs/detection.md`` records the figures.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pdm_common.contracts import AssetKind

__all__ = ["DetectionSettings"]


class DetectionSettings(BaseModel):
    """Frozen detection and lifecycle settings; constructor arguments are the whole configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- warm-up ---------------------------------------------------------------------------
    warmup_samples: int = Field(720, ge=10, description="operating samples learned before any alert")
    warmup_h: float = Field(24.0, ge=0, description="asset hours before any alert: one diurnal cycle")

    # --- regime baseline ---------------------------------------------------------------------
    drivers: dict[AssetKind, tuple[str, ...]] = Field(
        default_factory=lambda: {
            # failure-physics.md A1: every heat-pump signal follows outdoor air and compressor speed.
            # Flow temperature is the controller's weather-compensated set-point: it carries set-point
            # changes and holidays, so those are regime, not anomaly.
            AssetKind.HEAT_PUMP: ("outdoor_temp_c", "compressor_hz", "flow_temp_c"),
            # Pump duty follows shaft speed; load/shift changes show up through it.
            AssetKind.PUMP: ("speed_rpm",),
        },
        description="numeric regime drivers per asset kind; boolean flags are always drivers",
    )
    baseline_halflife_d: float = Field(
        60.0, gt=0, description="forgetting of the regime regression; long so a slow fault is not learned"
    )
    learn_healthy_after_warmup: bool = Field(
        False,
        description="keep learning the baseline from healthy-looking samples after warm-up (False: only from "
        "regimes never seen, so a slow fault is not learned as normal)",
    )
    settle_samples: int = Field(10, ge=0, description="samples skipped after a defrost or a start")

    # --- scores and thresholds -----------------------------------------------------------------
    drift_halflife_h: float = Field(4.0, gt=0, description="smoothing of residuals for slow-degradation")
    min_drift_sd: float = Field(
        0.2,
        gt=0,
        description="floor (residual sigmas) of the smoothed residuals' spread: smaller persistent biases are "
        "within sensor tolerance, and a spread learned over one quiet day must not make them alarms",
    )
    threshold_quantile: float = Field(0.99, gt=0.5, lt=1.0, description="quantile of the asset's own scores")
    threshold_margin: float = Field(3.5, ge=1.0, description="threshold = margin x learned quantile")
    hysteresis: float = Field(0.6, gt=0, lt=1.0, description="an alert counts as healthy below this x threshold")

    # --- lifecycle -----------------------------------------------------------------------------
    # Longer than the sensor checks (a stuck channel is known after 10-25 samples) so a broken sensor
    # is named before it can open a machine alert; half an hour costs little against days of lead.
    debounce_n: int = Field(20, ge=1, description="anomalous samples among the last M needed to open")
    debounce_m: int = Field(30, ge=1, description="window of the N-of-M debounce")
    recovering_after_h: float = Field(2.0, ge=0, description="healthy this long: open -> recovering")
    resolve_after_h: float = Field(12.0, ge=0, description="healthy this long in total: recovering -> resolved")
    verification_h: float = Field(24.0, gt=0, description="healthy this long after 'serviced' to confirm a fix")
    ttf_change_pct: float = Field(30.0, gt=0, description="TTF p50 change that counts as material")
    min_update_interval_h: float = Field(1.0, ge=0, description="at most one 'updated' event per alert this often")

    # --- sensor health -------------------------------------------------------------------------
    stuck_samples: int = Field(60, ge=3, description="identical readings in a row that mean a stuck sensor")
    dropout_samples: int = Field(10, ge=1, description="missing readings in a row that mean a dead sensor")
    spike_z: float = Field(8.0, gt=3, description="single-sample deviation (sigmas) treated as a spike")
    spike_count: int = Field(3, ge=1, description="spikes within spike_window_h that flag the sensor")
    spike_window_h: float = Field(24.0, gt=0)
    sensor_drift_ratio: float = Field(
        0.5, gt=0, lt=1, description="a drift is one sensor's when no other channel moves more than this share"
    )
    sensor_drift_min: float = Field(
        2.0, gt=0, description="a lone channel must be this many thresholds off to be called drifting"
    )
    silence_s: float = Field(900.0, gt=0, description="no telemetry this long: every sensor counts as dropped out")

    # --- publishing ------------------------------------------------------------------------------
    state_every_samples: int = Field(60, ge=1, description="publish AssetState at least this often (samples)")
    recent_series: int = Field(4, ge=1, le=8, description="contributing metrics plotted in the ticket")
    recent_points: int = Field(180, ge=10, le=720, description="points per plotted series")
    max_assets: int = Field(500, ge=1, description="detectors kept; telemetry for more assets is ignored")

    @model_validator(mode="after")
    def _debounce(self) -> Self:
        if self.debounce_n > self.debounce_m:
            raise ValueError("debounce_n must not exceed debounce_m")
        if self.resolve_after_h < self.recovering_after_h:
            raise ValueError("resolve_after_h must be at least recovering_after_h")
        return self
