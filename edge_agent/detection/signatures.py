"""The rule that names the probable fault, from a kind's fault signatures.

Each fault of a profile lists the channels it moves, in which direction and roughly how far (in
residual sigmas). The classifier compares the signed deviation pattern of the residuals with each
signature by cosine similarity over the channels the asset actually reports (a heat pump without a
suction-temperature sensor is not penalised for it), and turns the similarities into confidences with
a softmax: documented rules rather than a trained model, so a technician can read why. When no
signature points the way the residuals move (best similarity at or below zero), the diagnosis is
``unclassified``: a vendor kind without declared faults always gets that, never another kind's fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.detection.plan import KindPlan
from pdm_common.profiles import UNCLASSIFIED

__all__ = ["Diagnosis", "classify", "diagnose", "is_lone_lead", "leads_a_signature", "probabilities"]

_SOFTMAX_SCALE = 6.0
"""Sharpness of the confidences: a cosine lead of 0.2 gives about 3.3:1 odds."""

_MIN_SIMILARITY = 0.0
"""A signature must point the residuals' way (positive cosine) to be a candidate at all."""

_MAX_ALTERNATIVES = 3


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The most likely fault with confidence, and the runners-up."""

    code: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]


def probabilities(plan: KindPlan, evidence: Mapping[str, float]) -> dict[str, float]:
    """Confidence of each fault of the kind given signed deviations (empty when nothing deviates).

    Faults whose signature does not point the residuals' way get none; when none does, the whole
    mass goes to ``unclassified``.
    """
    ev_norm = math.sqrt(sum(v * v for v in evidence.values()))
    if ev_norm == 0.0:
        return {}
    sims: dict[str, float] = {}
    for code, sig in plan.signatures.items():
        seen = [(w, evidence[m]) for m, w in sig.items() if m in evidence]
        sig_norm = math.sqrt(sum(w * w for w, _ in seen))
        if sig_norm == 0.0:
            continue
        sim = sum(w * v for w, v in seen) / (sig_norm * ev_norm)
        if sim > _MIN_SIMILARITY:
            sims[code] = sim
    if not sims:
        return {UNCLASSIFIED: 1.0}
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
    alts = tuple((c, round(p, 3)) for p, c in ranked[1 : 1 + _MAX_ALTERNATIVES] if c != UNCLASSIFIED)
    return Diagnosis(best, round(best_p, 3), alts)


def classify(plan: KindPlan, evidence: Mapping[str, float]) -> Diagnosis | None:
    """Name the probable machine fault from signed deviations of the residuals.

    Args:
        plan: the asset's kind, which holds the signatures.
        evidence: metric -> signed deviation of the healthy channels.

    Returns:
        The diagnosis (``unclassified`` when no signature fits), or None when no channel deviates.

    >>> from edge_agent.detection.plan import plan_for
    >>> from pdm_common.profiles import ProfileRegistry
    >>> pump = plan_for(ProfileRegistry.builtin().require("pump"))
    >>> classify(pump, {"seal_temp_c": 6.0, "vibration_mm_s": 0.2}).code
    'seal_leak'
    >>> classify(pump, {"seal_temp_c": -6.0}).code
    'unclassified'
    """
    return diagnose(probabilities(plan, evidence))


def is_lone_lead(plan: KindPlan, metric: str, deviation: float) -> bool:
    """True when ``metric`` moving by ``deviation`` alone can be a machine fault (``Profile.lone_leads``)."""
    direction = plan.lone_leads.get(metric)
    return direction is not None and direction * deviation > 0


def leads_a_signature(plan: KindPlan, metric: str, deviation: float) -> bool:
    """True when ``metric`` is the strongest channel of some fault's signature, moving its way.

    A step of such a channel alone is a part that stuck (failure-physics.md A2: a restricted EEV
    steps the discharge temperature long before suction pressure follows in a deep frost).
    """
    for code, sig in plan.signatures.items():
        lead = plan.lead_of(code)
        if lead == metric and sig[lead] * deviation > 0:
            return True
    return False
