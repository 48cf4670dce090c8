"""Fault signatures per asset kind and the rule that names the probable fault.

Each signature lists the channels a fault moves, in which direction and roughly how far (in
residual sigmas), from the "early -> late signature" columns of failure-physics.md A2 (heat pump)
and the section D cheat-sheet (pumps). The classifier compares the signed deviation pattern of
the residuals with each signature (cosine similarity) and turns the similarities into confidences
with a softmax; documented rules rather than a trained model, so a technician can read why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pdm_common.catalog import FaultCode
from pdm_common.contracts import AssetKind

__all__ = [
    "LONE_LEADS",
    "SIGNATURES",
    "Diagnosis",
    "classify",
    "diagnose",
    "is_lone_lead",
    "leads_a_signature",
    "probabilities",
]

SIGNATURES: dict[AssetKind, dict[FaultCode, dict[str, float]]] = {
    # Expected residual shift near failure, in typical residual sigmas, given that the regime drivers
    # (outdoor temperature, compressor speed, flow temperature) are inputs: a fault that raises the
    # compressor speed shows only in what the speed does not explain. Derived from the hidden-variable
    # changes of failure-physics.md A2 (approach, condensing temperature, efficiency, capacity).
    AssetKind.HEAT_PUMP: {
        # Approach +6 K (suction down), discharge +22 K; the current follows the higher speed.
        FaultCode.REFRIGERANT_LEAK: {"discharge_temp_c": 24.0, "suction_pressure_bar": -12.0},
        # "High back / low head"; current +2 A on top of the efficiency loss; discharge T +11 K.
        FaultCode.COMPRESSOR_WEAR: {
            "compressor_current_a": 20.0, "suction_pressure_bar": 8.0, "discharge_pressure_bar": -12.0,
            "discharge_temp_c": 11.0,
        },
        # rpm -45 % at the same command; approach +9 K; efficiency loss raises the current.
        FaultCode.FAN_MOTOR: {
            "fan_rpm": -28.0, "suction_pressure_bar": -18.0, "discharge_temp_c": 4.0, "compressor_current_a": 7.0,
        },
        # Approach +14 K on a frozen coil: suction pressure falls hardest; the bigger lift costs current.
        FaultCode.EVAPORATOR_ICING: {
            "suction_pressure_bar": -28.0, "discharge_temp_c": 6.0, "compressor_current_a": 8.0,
        },
        # Flow -55 %, condensing +6 K (head pressure up), delta-T doubles (return down).
        FaultCode.LOW_FLOW: {
            "flow_lpm": -40.0, "discharge_pressure_bar": 20.0, "discharge_temp_c": 16.0, "return_temp_c": -17.0,
            "compressor_current_a": 10.0,
        },
        # Restricted EEV: discharge +25 K, approach +4 K, and head pressure *up* (subcooling up), which
        # tells it from a leak (A2).
        FaultCode.EXPANSION_VALVE: {
            "discharge_temp_c": 27.0, "suction_pressure_bar": -8.0, "discharge_pressure_bar": 3.0,
            "compressor_current_a": -2.5,
        },
    },
    AssetKind.PUMP: {
        # D: vibration RMS 1.5 -> 4.5 mm/s; bearing temperature +12 K only in the last 10-15 %.
        FaultCode.BEARING_WEAR: {"vibration_mm_s": 15.0, "bearing_temp_c": 4.0},
        # D: NPSH margin gone: suction down, head and flow collapse, current falls, HF vibration up.
        FaultCode.CAVITATION: {
            "suction_pressure_bar": -6.0, "flow_m3_h": -30.0, "discharge_pressure_bar": -15.0,
            "motor_current_a": -30.0, "vibration_mm_s": 8.0,
        },
        # D: head -10 %, flow -8 %, power about flat so current falls with flow.
        FaultCode.IMPELLER_WEAR: {"flow_m3_h": -12.0, "discharge_pressure_bar": -5.0, "motor_current_a": -10.0},
        # D: seal-chamber temperature up, nothing else to see.
        FaultCode.SEAL_LEAK: {"seal_temp_c": 45.0},
        # Winding heating: motor temperature up, current +6 %.
        FaultCode.MOTOR_OVERHEATING: {"motor_temp_c": 45.0, "motor_current_a": 7.0},
    },
}

LONE_LEADS: dict[AssetKind, dict[str, float]] = {
    AssetKind.PUMP: {
        # failure-physics.md D: bearing wear shows in vibration alone until the last 10-15 % of life,
        # and a leaking seal heats its chamber with nothing else to see.
        "vibration_mm_s": 1.0,
        "seal_temp_c": 1.0,
    },
}
"""Channels that are a machine fault's only early sign, with the fault's direction. A deviation of
one of these alone, in that direction, stays a machine concern instead of a sensor drift."""

_SOFTMAX_SCALE = 6.0
"""Sharpness of the confidences: a cosine lead of 0.2 gives about 3.3:1 odds. Set so the
confidence tracks the benchmark's accuracy (docs/detection.md)."""

_MAX_ALTERNATIVES = 3


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The most likely fault with confidence, and the runners-up."""

    code: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]


def probabilities(kind: AssetKind, evidence: Mapping[str, float]) -> dict[str, float]:
    """Confidence of each fault of ``kind`` given signed deviations (empty when nothing deviates).

    Cosine similarity of the deviation pattern with each signature, turned into a softmax.
    """
    ev_norm = math.sqrt(sum(v * v for v in evidence.values()))
    if ev_norm == 0.0:
        return {}
    sims: dict[str, float] = {}
    for code, sig in SIGNATURES[kind].items():
        sig_norm = math.sqrt(sum(w * w for w in sig.values()))
        sims[code.value] = sum(w * evidence.get(m, 0.0) for m, w in sig.items()) / (sig_norm * ev_norm)
    top = max(sims.values())
    weights = {c: math.exp(_SOFTMAX_SCALE * (v - top)) for c, v in sims.items()}
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()}


def diagnose(probs: Mapping[str, float]) -> Diagnosis | None:
    """The most likely fault and up to three alternatives from fault probabilities."""
    if not probs:
        return None
    total = sum(probs.values()) or 1.0
    ranked = sorted(((p / total, c) for c, p in probs.items()), reverse=True)
    best_p, best = ranked[0]
    alts = tuple((c, round(p, 3)) for p, c in ranked[1 : 1 + _MAX_ALTERNATIVES])
    return Diagnosis(best, round(best_p, 3), alts)


def classify(kind: AssetKind, evidence: Mapping[str, float]) -> Diagnosis | None:
    """Name the probable machine fault from signed deviations of the residuals.

    Args:
        kind: the asset kind, which selects the signatures.
        evidence: metric -> signed deviation of the healthy channels.

    Returns:
        The diagnosis, or None when no channel deviates.

    >>> d = classify(AssetKind.PUMP, {"seal_temp_c": 6.0, "vibration_mm_s": 0.2})
    >>> d.code if d else None
    'seal_leak'
    """
    return diagnose(probabilities(kind, evidence))


def is_lone_lead(kind: AssetKind, metric: str, deviation: float) -> bool:
    """True when ``metric`` moving by ``deviation`` alone can be a machine fault (see LONE_LEADS)."""
    direction = LONE_LEADS.get(kind, {}).get(metric)
    return direction is not None and direction * deviation > 0


def leads_a_signature(kind: AssetKind, metric: str, deviation: float) -> bool:
    """True when ``metric`` is the strongest channel of some fault's signature, moving its way.

    A step of such a channel alone is a part that stuck (failure-physics.md A2: a restricted EEV
    steps the discharge temperature long before suction pressure follows in a deep frost).
    """
    for sig in SIGNATURES[kind].values():
        lead = max(sig, key=lambda m: abs(sig[m]))
        if lead == metric and sig[lead] * deviation > 0:
            return True
    return False
