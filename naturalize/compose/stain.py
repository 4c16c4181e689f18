"""Stain matching: the von Kries gain that recolours a sprite to the background plate's source image.

Under Beer-Lambert a change of illumination or stain tint multiplies every transmitted channel, so a
sprite cut from image A is made to look as if imaged like plate B by multiplying each BGR channel by
plasma(B) / plasma(A), the ratio of the two images' plasma (cell-free) colours.

In: plasma colours (BGR float32). Out: gains (BGR float32), clipped to GAIN_RANGE.
"""

from __future__ import annotations

import numpy as np

#: Gains are clipped to this range (a plate far from the sprite's source is not trusted further).
GAIN_RANGE = (0.67, 1.5)
#: Below this distance from 1 no channel of a uint8 sprite moves by a level: the sprite is left as it is.
UNIT_TOLERANCE = 0.004


def stain_gain(src_plasma: np.ndarray, dst_plasma: np.ndarray) -> np.ndarray:
    """Per-channel gain (BGR, ... x 3) taking sprites' source plasma colours to plates' (broadcast), clipped."""
    return np.clip(dst_plasma / np.maximum(src_plasma, 1.0), *GAIN_RANGE).astype(np.float32)


def gain_table(sprite_plasma: np.ndarray, plate_plasma: np.ndarray) -> np.ndarray:
    """(plates, sprites, 3) float32: the gain of every sprite (n x 3 plasma) on every plate (p x 3), with
    exact 1.0 where every channel is within UNIT_TOLERANCE of 1 (those sprites are pasted unchanged)."""
    g = stain_gain(sprite_plasma[None, :, :], plate_plasma[:, None, :])
    g[np.abs(g - 1).max(axis=2) <= UNIT_TOLERANCE] = 1.0
    return g
