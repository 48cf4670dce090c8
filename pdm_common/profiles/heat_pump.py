"""Built-in profile: residential air-to-water heat pump (8 kW R32 monobloc class).

Ranges and noise: failure-physics.md A1 table [S]/[E]. Signatures: expected residual shift near
failure, in typical residual sigmas, given that the regime drivers (outdoor temperature, compressor
speed, flow temperature) are inputs, so a fault that raises the compressor speed shows only in what
the speed does not explain; derived from the hidden-variable changes of failure-physics.md A2
(approach, condensing temperature, efficiency, capacity) and D. Failure criteria: the trips of A1/A2
with their sources; [E] marks an engineering assumption, as in failure-physics.md.
"""

from __future__ import annotations

from pdm_common.profiles.codes import FaultCode
from pdm_common.profiles.schema import Channel, ChannelRole, FailureCriterion, Fault, Operating, Profile

__all__ = ["PROFILE"]

_DISCHARGE_TRIP = 115.0
"""[S] Midea ATOM P4 trip when T5 > 115 °C; Technibel trip at 115 °C (failure-physics.md A1)."""

PROFILE = Profile(
    name="heat_pump",
    words={"en": "heat pump", "no": "varmepumpe"},
    source="reference/failure-physics.md A1 (ranges, noise), A2 and D (faults, trips)",
    channels={
        # failure-physics.md A1: every heat-pump signal follows outdoor air and compressor speed. Flow
        # temperature is the controller's weather-compensated set-point: it carries set-point changes
        # and holidays, so those are regime, not anomaly.
        "outdoor_temp_c": Channel(unit="°C", role=ChannelRole.DRIVER, normal_low=-30.0, normal_high=20.0,
                                  noise_sigma=0.1, quantum=0.1, words={"en": "outdoor temperature",
                                                                       "no": "utetemperatur"}),
        "flow_temp_c": Channel(unit="°C", role=ChannelRole.DRIVER, normal_low=25.0, normal_high=58.0,
                               noise_sigma=0.1, quantum=0.1, words={"en": "flow temperature", "no": "turtemperatur"}),
        "return_temp_c": Channel(unit="°C", normal_low=20.0, normal_high=53.0, noise_sigma=0.1, quantum=0.1,
                                 words={"en": "return temperature", "no": "returtemperatur"}),
        "discharge_temp_c": Channel(unit="°C", normal_low=40.0, normal_high=100.0, noise_sigma=0.3, quantum=0.1,
                                    words={"en": "discharge temperature", "no": "trykkgasstemperatur"}),
        "suction_pressure_bar": Channel(unit="bar", normal_low=2.0, normal_high=12.0, noise_sigma=0.05,
                                        quantum=0.01, log_scale=True,
                                        words={"en": "suction pressure", "no": "sugetrykk"}),
        "discharge_pressure_bar": Channel(unit="bar", normal_low=15.0, normal_high=37.0, noise_sigma=0.1,
                                          quantum=0.01, log_scale=True,
                                          words={"en": "discharge pressure", "no": "høytrykk"}),
        "compressor_current_a": Channel(unit="A", normal_low=0.0, normal_high=14.0, noise_sigma=0.1, quantum=0.1,
                                        words={"en": "compressor current", "no": "kompressorstrøm"}),
        "compressor_hz": Channel(unit="Hz", role=ChannelRole.DRIVER, normal_low=0.0, normal_high=110.0,
                                 noise_sigma=0.0, quantum=1.0, sensor=False,
                                 words={"en": "compressor speed", "no": "kompressorfrekvens"}),
        "fan_rpm": Channel(unit="rpm", normal_low=0.0, normal_high=900.0, noise_sigma=5.0, quantum=1.0,
                           words={"en": "fan speed", "no": "viftehastighet"}),
        "flow_lpm": Channel(unit="l/min", normal_low=12.0, normal_high=30.0, noise_sigma=0.3, quantum=0.1,
                            words={"en": "water flow", "no": "vannmengde"}),
        # Suction gas at the compressor inlet = evaporating temperature + superheat (A1: sigma 0.2 [E]); with
        # the suction pressure it gives the superheat. The range covers evaporating at T_oa - 6...10 K.
        "suction_temp_c": Channel(unit="°C", normal_low=-35.0, normal_high=20.0, noise_sigma=0.2, quantum=0.1,
                                  words={"en": "suction temperature", "no": "sugegasstemperatur"}),
        "defrost": Channel(role=ChannelRole.FLAG, sensor=False, words={"en": "defrost", "no": "avriming"}),
    },
    operating=Operating(channel="compressor_hz", above=0.0, off_flags=("defrost",)),
    # Water loop and discharge line settle in 4-5 min after a start, windings in tens of minutes
    # (simulators/fleet and failure-physics.md B2) [E].
    transients_min=(10.0, 40.0),
    frost=True,
    faults={
        FaultCode.REFRIGERANT_LEAK: Fault(
            # Approach +6 K (suction down), superheat up (suction gas warmer), discharge +22 K; the
            # current follows the higher speed.
            signature={"discharge_temp_c": 24.0, "suction_pressure_bar": -12.0, "suction_temp_c": 10.0},
            criterion=FailureCriterion(
                metric="discharge_temp_c", direction="above", threshold=_DISCHARGE_TRIP,
                description="discharge-temperature trip (Midea P4: insufficient refrigerant)",
                source="[S] Midea ATOM P4 trip at 115 °C; Technibel trip 115 °C"),
            words={"en": "refrigerant leak", "no": "lekkasje av kuldemedium"},
            parts=("R32 refrigerant cylinder and charging scale", "electronic leak detector",
                   "flare nuts and copper gaskets", "brazing kit"),
            checks=("Measure superheat and subcooling (leak: subcooling low, superheat high)",
                    "Leak-test flare joints, service valves and the outdoor coil",
                    "Weigh in the charge to the nameplate after repair",
                    "Log the refrigerant quantity added (F-gas record)"),
            source="failure-physics.md A2 refrigerant leak; D: superheat 5 -> 15-25 K, T_evap -3..8 K",
        ),
        FaultCode.COMPRESSOR_WEAR: Fault(
            # "High back / low head"; current +2 A on top of the efficiency loss; discharge T +11 K.
            signature={"compressor_current_a": 20.0, "suction_pressure_bar": 8.0, "discharge_pressure_bar": -12.0,
                       "discharge_temp_c": 11.0},
            criterion=FailureCriterion(
                metric="compressor_current_a", direction="above", threshold=16.0,
                description="compressor over-current trip",
                source="[E] 8 kW single-phase class: ~14 A max normal, trip ~15 % above"),
            words={"en": "compressor wear", "no": "slitasje på kompressor"},
            parts=("compressor (model-specific, order ahead)", "compressor terminal kit", "filter drier"),
            checks=("Compare suction and discharge pressure with the datasheet at the current outdoor temperature "
                    "(high back, low head = valve leakage)",
                    "Measure compressor current and winding resistance",
                    "Listen for bearing noise; check the inverter fault log"),
            source="failure-physics.md A2 compressor wear",
        ),
        FaultCode.FAN_MOTOR: Fault(
            # rpm -45 % at the same command; approach +9 K (evaporating and suction gas colder);
            # the efficiency loss raises the current.
            signature={"fan_rpm": -28.0, "suction_pressure_bar": -18.0, "discharge_temp_c": 4.0,
                       "compressor_current_a": 7.0, "suction_temp_c": -4.0},
            criterion=FailureCriterion(
                metric="fan_rpm", direction="below", threshold=150.0,
                description="outdoor fan lock (stall), then low-pressure trip",
                source="[E] fan lock error when speed collapses at full command"),
            words={"en": "outdoor fan motor fault", "no": "feil på viftemotor ute"},
            parts=("outdoor fan motor (model-specific)", "fan blade", "motor capacitor or fan driver board"),
            checks=("Check the fan turns freely and the blade is not iced or blocked",
                    "Compare fan speed with the commanded speed; measure fan current",
                    "Check the outdoor coil for frost build-up"),
            source="failure-physics.md A2 outdoor fan motor",
        ),
        FaultCode.EVAPORATOR_ICING: Fault(
            # Approach +14 K on a frozen coil: suction pressure and temperature fall hardest; the bigger
            # lift costs current.
            signature={"suction_pressure_bar": -28.0, "discharge_temp_c": 6.0, "compressor_current_a": 8.0,
                       "suction_temp_c": -10.0},
            criterion=FailureCriterion(
                metric="suction_pressure_bar", direction="below", threshold=1.5,
                description="low-pressure trip on a frozen coil",
                source="[S] Carrier 38VMA P2 trip at 0.05 MPa g (≈1.5 bar abs)"),
            words={"en": "evaporator icing / defrost fault", "no": "ising av fordamper / avrimingsfeil"},
            parts=("4-way (reversing) valve coil", "defrost temperature sensor", "outdoor coil sensor"),
            checks=("Inspect the outdoor coil for ice; run a manual defrost",
                    "Test the defrost sensor and the 4-way valve coil",
                    "Check that condensate drains freely and the drain heater works"),
            source="failure-physics.md A2 evaporator icing / defrost failure",
        ),
        FaultCode.LOW_FLOW: Fault(
            # Flow -55 %, condensing +6 K (head pressure up), delta-T doubles (return down).
            signature={"flow_lpm": -40.0, "discharge_pressure_bar": 20.0, "discharge_temp_c": 16.0,
                       "return_temp_c": -17.0, "compressor_current_a": 10.0},
            criterion=FailureCriterion(
                metric="flow_lpm", direction="below", threshold=9.0, description="water flow-switch alarm",
                source="[S~] Ferroli Omnia flow-switch alarm; [E] switch point ≈ 50 % of design flow"),
            words={"en": "low water flow", "no": "lav vannsirkulasjon"},
            parts=("circulation pump", "strainer / magnetic filter cartridge", "automatic air vent"),
            checks=("Clean the strainer or magnetic filter",
                    "Bleed air from the heating circuit and check the system pressure",
                    "Check the circulation pump speed and the flow-temperature minus return-temperature "
                    "difference (over 10 K means low flow)"),
            source="failure-physics.md A2 circulation pump / low water flow",
        ),
        FaultCode.EXPANSION_VALVE: Fault(
            # Restricted EEV: discharge +25 K, approach +4 K, superheat up, and head pressure *up*
            # (subcooling up), which tells it from a leak (A2).
            signature={"discharge_temp_c": 27.0, "suction_pressure_bar": -8.0, "discharge_pressure_bar": 3.0,
                       "compressor_current_a": -2.5, "suction_temp_c": 12.0},
            criterion=FailureCriterion(
                metric="discharge_temp_c", direction="above", threshold=_DISCHARGE_TRIP,
                description="discharge-temperature trip (restricted EEV)",
                source="[S] Midea/Technibel discharge trip at 115 °C"),
            words={"en": "expansion valve fault (restricted)", "no": "feil på ekspansjonsventil (struper)"},
            parts=("electronic expansion valve (EEV) body and coil", "filter drier"),
            checks=("Measure superheat and subcooling (restricted valve: both high; leak: subcooling low)",
                    "Check the EEV coil resistance and the stepper drive",
                    "Check for a blocked liquid-line filter"),
            source="failure-physics.md A2 expansion valve, closed/restricted",
        ),
        FaultCode.FOUR_WAY_VALVE_LEAK: Fault(
            # Discharge gas bleeds to suction inside the valve: suction pressure and suction gas
            # temperature up, head down, the superheated suction gas drives the discharge temperature up
            # to its trip; the smaller lift lowers the current at the same speed, which tells it from
            # compressor wear (current up) (A2, D: bypass 0 -> 25 %).
            signature={"suction_pressure_bar": 10.0, "discharge_pressure_bar": -12.0, "suction_temp_c": 18.0,
                       "discharge_temp_c": 16.0, "compressor_current_a": -4.0},
            criterion=FailureCriterion(
                metric="discharge_temp_c", direction="above", threshold=_DISCHARGE_TRIP,
                description="discharge-temperature trip: hot gas bypassing to suction superheats the suction gas",
                source="[S] Midea ATOM P4 / Technibel trip at 115 °C; [S] ACHR News, launchmyhvac KB (bleed-through: "
                       "suction T and discharge T up, capacity down)"),
            words={"en": "4-way (reversing) valve leak", "no": "lekkasje i 4-veisventil"},
            parts=("4-way (reversing) valve body", "4-way valve coil", "brazing kit", "filter drier"),
            checks=("Measure the temperature difference across the 4-way valve lines (bleed-through: small)",
                    "Compare suction and discharge pressure with the datasheet (high suction, low head)",
                    "Check the valve coil and that the valve switches fully after a defrost"),
            source="failure-physics.md A2 4-way valve internal leak; D",
        ),
        FaultCode.EEV_STUCK_OPEN: Fault(
            # Stuck open: superheat -> 0 (suction gas at evaporating temperature), liquid flood-back,
            # low discharge superheat (discharge temperature falls towards condensing), evaporating
            # pressure up with the extra refrigerant flow; the compressor labours on liquid, so the
            # current rises towards over-current (A2, Trane "low discharge superheat").
            signature={"discharge_temp_c": -25.0, "suction_temp_c": -8.0, "suction_pressure_bar": 6.0,
                       "compressor_current_a": 12.0},
            criterion=FailureCriterion(
                metric="compressor_current_a", direction="above", threshold=16.0,
                description="compressor damage from liquid flood-back, then over-current / locked-rotor trip",
                source="[S~] failure-physics.md A2: stuck-open EEV ends in compressor damage (flooding), ACHR News; "
                       "[E] over-current trip ~15 % above the 14 A normal maximum, as compressor_wear"),
            words={"en": "expansion valve stuck open", "no": "ekspansjonsventil står åpen"},
            parts=("electronic expansion valve (EEV) body and coil", "EEV driver board", "filter drier"),
            checks=("Measure suction superheat (stuck open: near 0 K) and discharge superheat",
                    "Check the EEV coil resistance and that the stepper closes",
                    "Check the compressor for liquid slugging and oil dilution"),
            source="failure-physics.md A2 expansion valve, stuck open; D EEV stuck",
        ),
    },
)
