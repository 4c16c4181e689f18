"""In-memory batches for Keras: uint8 images -> float32 batches, with seeded flip/rot90 augmentation in numpy."""

from __future__ import annotations

import numpy as np


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip, vertical flip and k*90 degree rotation per image of a (B, S, S, C) batch."""
    out = np.empty_like(x)
    flips_h = rng.random(len(x)) < 0.5
    flips_v = rng.random(len(x)) < 0.5
    turns = rng.integers(0, 4, len(x))
    for i in range(len(x)):
        a = x[i]
        if flips_h[i]:
            a = a[:, ::-1]
        if flips_v[i]:
            a = a[::-1]
        out[i] = np.rot90(a, int(turns[i]))
    return out


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of one epoch: a permutation fixed by (seed, epoch), so a resumed run sees the same."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def make_batches(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    augment_data: bool = False,
    shuffle: bool = False,
    seed: int = 0,
):
    """A keras.utils.PyDataset over in-memory arrays (import-time keras dependency kept inside)."""
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Batches of float32 images (0..255) and int labels; call set_epoch(e) before each epoch."""

        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = epoch_order(len(x), seed, 0, shuffle)

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch
            self.order = epoch_order(len(x), seed, epoch, shuffle)

        def __len__(self) -> int:
            return (len(x) + batch_size - 1) // batch_size

        def __getitem__(self, i: int):
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            xb = np.asarray(x[idx])
            if augment_data:
                xb = augment(xb, np.random.default_rng([seed, self.epoch, i, 1]))
            xb = xb.astype(np.float32)
            return xb if y is None else (xb, y[idx])

        def on_epoch_end(self) -> None:
            self.set_epoch(self.epoch + 1)

    return ArrayBatches()
