"""R32 saturation pressure against temperature, for the heat-pump refrigerant circuit.

Points from −10 °C to 50 °C are the allchemi R32 saturation table quoted in failure-physics.md A1 [S].
The points below −10 °C and above 50 °C are [E]: standard R32 property values (NIST REFPROP-class
tables, not re-checked against the cited source) needed because a Nordic winter evaporates below −10 °C
and a 55 °C flow condenses above 50 °C.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["saturation_pressure_bar", "saturation_temp_c"]

FloatArray = npt.NDArray[np.float64]

_TEMP_C = np.array(
    [-50.0, -40.0, -30.0, -20.0, -10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0]
)
_PRESSURE_BAR = np.array(
    [1.10, 1.77, 2.73, 4.05, 5.83, 6.91, 8.14, 9.53, 11.08, 14.76, 19.28, 21.90, 24.78, 27.94, 31.40, 35.1, 39.2]
)
_LOG_P = np.log(_PRESSURE_BAR)


def saturation_pressure_bar(temp_c: FloatArray) -> FloatArray:
    """Absolute saturation pressure of R32 at ``temp_c``.

    Interpolates ``ln p`` linearly in temperature (Clausius-Clapeyron makes ``ln p`` nearly linear), and
    extrapolates the end segments, so a frozen coil below −50 °C still gives a falling pressure.

    >>> round(float(saturation_pressure_bar(np.array([0.0]))[0]), 2)
    8.14
    """
    t = np.asarray(temp_c, dtype=np.float64)
    log_p = np.interp(t, _TEMP_C, _LOG_P)
    low = (_LOG_P[1] - _LOG_P[0]) / (_TEMP_C[1] - _TEMP_C[0])
    high = (_LOG_P[-1] - _LOG_P[-2]) / (_TEMP_C[-1] - _TEMP_C[-2])
    log_p = np.where(t < _TEMP_C[0], _LOG_P[0] + (t - _TEMP_C[0]) * low, log_p)
    log_p = np.where(t > _TEMP_C[-1], _LOG_P[-1] + (t - _TEMP_C[-1]) * high, log_p)
    return np.asarray(np.exp(log_p), dtype=np.float64)


def saturation_temp_c(pressure_bar: FloatArray) -> FloatArray:
    """Inverse of :func:`saturation_pressure_bar` inside the table range.

    >>> round(float(saturation_temp_c(np.array([24.78]))[0]), 1)
    40.0
    """
    p = np.asarray(pressure_bar, dtype=np.float64)
    return np.asarray(np.interp(np.log(p), _LOG_P, _TEMP_C), dtype=np.float64)
