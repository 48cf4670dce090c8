"""Built-in profile: industrial centrifugal pump set, 30-75 kW on a rigid base.

Ranges and noise: failure-physics.md B1/B3 and the proposed telemetry set [S]/[E]. Signatures:
expected residual shift near failure in typical residual sigmas, with shaft speed as the regime driver
(pump duty follows it, affinity laws), from the section D cheat-sheet and B3.
"""

from __future__ import annotations

from pdm_common.profiles.codes import FaultCode
from pdm_common.profiles.schema import Channel, ChannelRole, FailureCriterion, Fault, Operating, Profile

__all__ = ["PROFILE"]

PROFILE = Profile(
    name="pump",
    words={"en": "pump", "no": "pumpe"},
    source="reference/failure-physics.md B1-B3 (ranges, noise, faults) and D (trajectories)",
    channels={
        "vibration_mm_s": Channel(unit="mm/s RMS", normal_low=0.5, normal_high=2.8, noise_sigma=0.1, quantum=0.01,
                                  words={"en": "vibration (velocity RMS)", "no": "vibrasjon (hastighet RMS)"}),
        "bearing_temp_c": Channel(unit="°C", normal_low=20.0, normal_high=75.0, noise_sigma=0.2, quantum=0.1,
                                  words={"en": "bearing temperature", "no": "lagertemperatur"}),
        "motor_temp_c": Channel(unit="°C", normal_low=20.0, normal_high=110.0, noise_sigma=0.3, quantum=0.1,
                                words={"en": "motor winding temperature", "no": "motortemperatur"}),
        "motor_current_a": Channel(unit="A", normal_low=0.0, normal_high=130.0, noise_sigma=0.8, quantum=0.1,
                                   words={"en": "motor current", "no": "motorstrøm"}),
        "suction_pressure_bar": Channel(unit="bar", normal_low=0.3, normal_high=2.0, noise_sigma=0.02, quantum=0.01,
                                        words={"en": "suction pressure", "no": "sugetrykk"}),
        "discharge_pressure_bar": Channel(unit="bar", normal_low=0.0, normal_high=10.0, noise_sigma=0.05,
                                          quantum=0.01, words={"en": "discharge pressure", "no": "trykk, trykkside"}),
        "flow_m3_h": Channel(unit="m³/h", normal_low=0.0, normal_high=500.0, noise_sigma=2.0, quantum=0.1,
                             words={"en": "flow", "no": "vannmengde"}),
        # Pump duty follows shaft speed; load and shift changes show up through it.
        "speed_rpm": Channel(unit="rpm", role=ChannelRole.DRIVER, normal_low=0.0, normal_high=3000.0,
                             noise_sigma=2.0, quantum=1.0, words={"en": "shaft speed", "no": "turtall"}),
        "seal_temp_c": Channel(unit="°C", normal_low=20.0, normal_high=70.0, noise_sigma=0.2, quantum=0.1,
                               words={"en": "seal-chamber temperature", "no": "tetningstemperatur"}),
        # Impulse statistics of the bearing accelerometer: impacts are the fault, not a spiking sensor
        # (B2: "kurtosis / envelope energy rise first"). Kurtosis is about 3 for a healthy Gaussian signal.
        "vibration_kurtosis": Channel(unit="-", normal_low=2.2, normal_high=4.2, noise_sigma=0.2, quantum=0.01,
                                      impulse=True, words={"en": "vibration kurtosis", "no": "vibrasjon, kurtose"}),
        "vibration_envelope_g": Channel(unit="g", normal_low=0.05, normal_high=0.6, noise_sigma=0.01, quantum=0.001,
                                        impulse=True, words={"en": "vibration envelope", "no": "vibrasjon, omhylling"}),
        "running": Channel(role=ChannelRole.FLAG, sensor=False, words={"en": "running", "no": "i drift"}),
    },
    # The running flag where the PLC sends it; without it, a shaft turning faster than 100 rpm.
    operating=Operating(flag="running", channel="speed_rpm", above=100.0),
    # Bearings, windings and seals warm with 15-40 min time constants after a start (B2) [E].
    transients_min=(10.0, 40.0),
    # failure-physics.md D: bearing wear shows in vibration alone until the last 10-15 % of life, and
    # a leaking seal heats its chamber with nothing else to see.
    lone_leads={"vibration_mm_s": 1, "vibration_kurtosis": 1, "vibration_envelope_g": 1, "seal_temp_c": 1},
    faults={
        FaultCode.BEARING_WEAR: Fault(
            # D: kurtosis and envelope first, then velocity RMS 1.5 -> 4.5 mm/s; bearing temperature
            # +12 K only in the last 10-15 %.
            signature={"vibration_mm_s": 15.0, "bearing_temp_c": 4.0, "vibration_kurtosis": 12.0,
                       "vibration_envelope_g": 15.0},
            criterion=FailureCriterion(
                metric="vibration_mm_s", direction="above", threshold=4.5,
                description="ISO 10816-3 group 2 rigid, zone D",
                source="[S] ISO 10816-3 C/D boundary 4.5 mm/s (grayvolt.ai)"),
            words={"en": "bearing wear", "no": "lagerslitasje"},
            parts=("drive-end and non-drive-end bearings (size from the pump nameplate)", "bearing grease",
                   "shaft seals"),
            checks=("Measure vibration velocity RMS on both bearing housings (ISO 10816-3 zone C/D at 4.5 mm/s)",
                    "Take an envelope spectrum for bearing defect frequencies",
                    "Check bearing temperature and lubrication; check alignment"),
            source="failure-physics.md B2, B3 rolling-bearing degradation; D pump bearing",
        ),
        FaultCode.CAVITATION: Fault(
            # D: NPSH margin gone: suction down, head and flow collapse, current falls, HF vibration up.
            signature={"suction_pressure_bar": -6.0, "flow_m3_h": -30.0, "discharge_pressure_bar": -15.0,
                       "motor_current_a": -30.0, "vibration_mm_s": 8.0, "vibration_envelope_g": 10.0},
            criterion=FailureCriterion(
                metric="discharge_pressure_bar", direction="below", threshold=3.5,
                description="head collapse: cannot meet process duty", source="[E] ≈ −30 % of a 5 bar duty point"),
            words={"en": "cavitation", "no": "kavitasjon"},
            parts=("suction strainer", "impeller (if pitted)"),
            checks=("Check suction pressure against the NPSH required at the duty point",
                    "Check the suction strainer and valves for blockage",
                    "Check fluid temperature and tank level; check the duty point against the best-efficiency flow"),
            source="failure-physics.md B3 cavitation",
        ),
        FaultCode.IMPELLER_WEAR: Fault(
            # D: head -10 %, flow -8 %, power about flat so current falls with flow.
            signature={"flow_m3_h": -12.0, "discharge_pressure_bar": -5.0, "motor_current_a": -10.0},
            criterion=FailureCriterion(
                metric="discharge_pressure_bar", direction="below", threshold=4.5,
                description="−10 % head at duty speed",
                source="[S~] pumpworks/flowmetrics: failure at −10 % head"),
            words={"en": "impeller / wear-ring wear", "no": "slitasje på pumpehjul / slitering"},
            parts=("impeller", "wear rings", "casing gasket"),
            checks=("Compare head and flow at duty speed with the pump curve (failure at -10 % head)",
                    "Measure wear-ring clearance"),
            source="failure-physics.md B3 impeller / wear-ring wear",
        ),
        FaultCode.SEAL_LEAK: Fault(
            # D: seal-chamber temperature up, nothing else to see.
            signature={"seal_temp_c": 45.0},
            criterion=FailureCriterion(
                metric="seal_temp_c", direction="above", threshold=95.0,
                description="seal-chamber over-temperature / leak-detector trip",
                source="[E] ambient + 10-30 K normal; dry-running faces exceed 90 °C"),
            words={"en": "mechanical seal leak", "no": "lekkasje i mekanisk tetning"},
            parts=("mechanical seal cartridge", "O-ring kit", "seal flush line parts"),
            checks=("Inspect for visible leakage and check the seal-chamber temperature",
                    "Check the seal flush and that the pump has not run dry",
                    "Check vibration: seal failures often follow bearing damage or cavitation"),
            source="failure-physics.md B3 mechanical seal leak",
        ),
        FaultCode.MOTOR_OVERHEATING: Fault(
            # Winding heating: motor temperature up, current +6 %.
            signature={"motor_temp_c": 45.0, "motor_current_a": 7.0},
            criterion=FailureCriterion(
                metric="motor_temp_c", direction="above", threshold=140.0, description="winding thermal trip",
                source="[S~] class F insulation, 80 K rise limit by resistance; [E] trip at 140 °C"),
            words={"en": "motor overheating", "no": "overoppheting av motor"},
            parts=("motor cooling fan and cowl", "motor bearings", "thermal protection relay"),
            checks=("Measure phase currents and check for imbalance or overload",
                    "Clean the motor cooling fins and fan cowl",
                    "Measure insulation resistance (class F: 80 K rise limit)"),
            source="failure-physics.md B3 motor bearing / winding",
        ),
    },
)
