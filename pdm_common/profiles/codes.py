"""Diagnosis codes of the built-in profiles, and the two codes every kind shares.

A vendor's own kind names its faults with any ``[a-z][a-z0-9_]*`` code in its declaration; these are
the codes the product itself ships, so the simulator, the detector and the bridge spell them alike.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SENSOR_FAULT", "UNCLASSIFIED", "FaultCode"]

SENSOR_FAULT = "sensor_fault"
"""The probable-fault code for a broken sensor; never a machine fault (DESIGN.md §3)."""

UNCLASSIFIED = "unclassified"
"""The probable-fault code of a machine anomaly that no signature of its kind explains."""


class FaultCode(StrEnum):
    """Machine faults of the built-in profiles (``heat_pump``, ``pump``)."""

    # heat pump (failure-physics.md A2)
    REFRIGERANT_LEAK = "refrigerant_leak"
    COMPRESSOR_WEAR = "compressor_wear"
    FAN_MOTOR = "fan_motor"
    EVAPORATOR_ICING = "evaporator_icing"
    LOW_FLOW = "low_flow"
    EXPANSION_VALVE = "expansion_valve"
    """Restricted or stuck-closed electronic expansion valve."""
    FOUR_WAY_VALVE_LEAK = "four_way_valve_leak"
    EEV_STUCK_OPEN = "eev_stuck_open"
    # industrial pump (failure-physics.md B3, D)
    BEARING_WEAR = "bearing_wear"
    CAVITATION = "cavitation"
    IMPELLER_WEAR = "impeller_wear"
    SEAL_LEAK = "seal_leak"
    MOTOR_OVERHEATING = "motor_overheating"
