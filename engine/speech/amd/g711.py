"""G.711 µ-law to 16-bit linear (the native payload of a PCMU ``unicast`` tap).

``audioop`` did this until Python 3.13 removed it; a 256-entry table built once from the
G.711 formula is all that is needed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_ULAW = _table()


def ulaw_to_linear(data: bytes) -> npt.NDArray[np.int16]:
    """One 16-bit sample per µ-law byte."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]
