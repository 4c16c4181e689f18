"""Geometric transforms of sprites: random flips, quarter turns, small rotations and scale jitter.

In: a premultiplied BGRA sprite (h, w, 4 uint8) and a Transform. Out: the warped sprite on a canvas just
large enough to hold it (one affine warp, bilinear), and its BGR / alpha / mask split for pasting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.compose.params import ComposeParams


@dataclass(frozen=True)
class Transform:
    """flip (mirror left-right), then rot90 quarter turns, then `angle` degrees and `scale`."""

    flip: bool
    rot90: int
    angle: float
    scale: float

    def as_dict(self) -> dict:
        return {"flip": self.flip, "rot90": self.rot90, "angle": round(self.angle, 3), "scale": round(self.scale, 4)}


def sample_transform(rng: np.random.Generator, p: ComposeParams) -> Transform:
    """Random flip, quarter turn, small rotation (+-max_angle) and scale (1 +- scale_jitter)."""
    u = rng.random(4)
    return Transform(flip=bool(u[0] < 0.5), rot90=int(u[1] * 4) % 4, angle=float((2 * u[2] - 1) * p.max_angle),
                     scale=float(1 + (2 * u[3] - 1) * p.scale_jitter))


def warp(sprite: np.ndarray, t: Transform) -> np.ndarray:
    """The sprite (h, w, C uint8) under transform t, on a canvas just large enough to hold it."""
    h, w = sprite.shape[:2]
    a = math.radians(t.angle + 90 * t.rot90)
    c, s = math.cos(a) * t.scale, math.sin(a) * t.scale
    f = -1.0 if t.flip else 1.0
    lin = np.array([[c * f, -s], [s * f, c]])
    xs = np.array([-0.5, w - 0.5, -0.5, w - 0.5]) - (w - 1) / 2
    ys = np.array([-0.5, -0.5, h - 0.5, h - 0.5]) - (h - 1) / 2
    cx, cy = lin @ np.stack([xs, ys])
    ow, oh = int(math.ceil(cx.max() - cx.min() - 1e-6)), int(math.ceil(cy.max() - cy.min() - 1e-6))
    m = np.empty((2, 3))
    m[:, :2] = lin
    m[:, 2] = np.array([(ow - 1) / 2, (oh - 1) / 2]) - lin @ np.array([(w - 1) / 2, (h - 1) / 2])
    return cv2.warpAffine(sprite, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def split_warped(warped: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Warped premultiplied BGRA -> (BGR, alpha, mask uint8 0/255 where alpha >= 128, mask area)."""
    alpha = cv2.extractChannel(warped, 3)
    _, mask = cv2.threshold(alpha, 127, 255, cv2.THRESH_BINARY)
    return cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR), alpha, mask, cv2.countNonZero(mask)
