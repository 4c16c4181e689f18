"""Geometric transforms of sprites: random flips, quarter turns, small rotations and scale jitter.

turned / mirror_turn apply a further mirror and quarter turn to an already warped sprite (exact, cheap).

In: a premultiplied BGRA sprite (h, w, 4 uint8) and a Transform. Out: the warped sprite on a canvas just
large enough to hold it (one affine warp, bicubic: composites then are about as sharp as real crops,
where bilinear blurred them measurably), and its BGR / inverse alpha / mask split for pasting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np

from naturalize.compose.params import ComposeParams


class Transform(NamedTuple):
    """flip (mirror left-right), then rot90 quarter turns, then `angle` degrees and `scale` (a named tuple:
    one is made per pasted cell)."""

    flip: bool
    rot90: int
    angle: float
    scale: float

    def as_dict(self) -> dict:
        """The transform as JSON-ready keys, unrounded: Transform(**as_dict()) warps exactly as this one (rounded
        values can redraw a sprite on a canvas a pixel larger)."""
        return {"flip": self.flip, "rot90": self.rot90, "angle": self.angle, "scale": self.scale}


def sample_transform(rng: np.random.Generator, p: ComposeParams) -> Transform:
    """Random flip, quarter turn, small rotation (+-max_angle) and scale (1 +- scale_jitter)."""
    u = rng.random(4)
    return Transform(
        flip=bool(u[0] < 0.5),
        rot90=int(u[1] * 4) % 4,
        angle=float((2 * u[2] - 1) * p.max_angle),
        scale=float(1 + (2 * u[3] - 1) * p.scale_jitter),
    )


def warp(sprite: np.ndarray, t: Transform) -> np.ndarray:
    """The sprite (h, w, C uint8) under transform t, on a canvas just large enough to hold it."""
    h, w = sprite.shape[:2]
    a = math.radians(t.angle + 90 * t.rot90)
    c, s = math.cos(a) * t.scale, math.sin(a) * t.scale
    f = -1.0 if t.flip else 1.0
    (a00, a01), (a10, a11) = (c * f, -s), (s * f, c)
    # the w x h pixel rectangle, centred, spans |a00| w + |a01| h across and |a10| w + |a11| h down
    ow, oh = math.ceil(abs(a00) * w + abs(a01) * h - 1e-6), math.ceil(abs(a10) * w + abs(a11) * h - 1e-6)
    cx, cy = (w - 1) / 2, (h - 1) / 2  # the sprite's centre goes to the canvas's
    m = np.array([[a00, a01, (ow - 1) / 2 - a00 * cx - a01 * cy], [a10, a11, (oh - 1) / 2 - a10 * cx - a11 * cy]])
    return cv2.warpAffine(sprite, m, (ow, oh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def turned(t: Transform, flip: bool, turns: int) -> Transform:
    """The transform `t` followed by a left-right mirror (if flip) and then `turns` quarter turns."""
    if not flip:
        return Transform(t.flip, (t.rot90 + turns) % 4, t.angle, t.scale)
    return Transform(not t.flip, (turns - t.rot90) % 4, -t.angle, t.scale)


def _mirror_turn(flip: bool, turns: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """The function of one array doing a left-right mirror (if flip) then `turns` clockwise quarter turns,
    as one OpenCV call (two for the anti-transpose); None for the identity."""
    if not flip:
        return {
            0: None,
            1: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
            2: lambda a: cv2.flip(a, -1),
            3: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
        }[turns]
    return {
        0: lambda a: cv2.flip(a, 1),
        1: lambda a: cv2.flip(cv2.transpose(a), -1),
        2: lambda a: cv2.flip(a, 0),
        3: cv2.transpose,
    }[turns]


_MIRROR_TURN = {(flip, turns): _mirror_turn(flip, turns) for flip in (False, True) for turns in range(4)}


def mirror_turn(flip: bool, turns: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """The function that mirrors an (h, w[, c]) uint8 array left-right (if flip), then turns it by `turns`
    quarter turns the way Transform.rot90 turns (clockwise on screen), into a new contiguous array (OpenCV:
    numpy's strided copies of turned views cost several times more); None when nothing turns."""
    return _MIRROR_TURN[(flip, turns & 3)]


_NEAR = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def split_warped(warped: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Warped premultiplied BGRA -> (premultiplied BGR with 255 - alpha in the 4th channel (what blending
    multiplies the image by; 4-byte pixels turn several times faster than 3-byte ones), mask uint8 0/255
    where alpha >= 128, mask area). Colour and alpha farther than 2 px from the mask are dropped
    (interpolation can thin a faint part below 128: it would change pixels no mask accounts for)."""
    alpha = cv2.extractChannel(warped, 3)
    _, mask = cv2.threshold(alpha, 127, 255, cv2.THRESH_BINARY)
    warped = cv2.bitwise_and(warped, warped, mask=cv2.dilate(mask, _NEAR))
    return cv2.bitwise_xor(warped, (0, 0, 0, 255)), mask, cv2.countNonZero(mask)
