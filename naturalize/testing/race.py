"""Runs that race: the same step started in several processes at one instant (a barrier), for tests."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from naturalize.compose.params import ComposeParams
from naturalize.compose.run import STATE_VERSION, claim_output
from naturalize.fsio import UserError


def compose_state(seed: int, cls: str = "PMY", n: int = 4) -> dict:
    """The settings compose_class records for a run of `cls` of `seed` with default parameters (a stand-in bank)."""
    params = ComposeParams().as_dict()
    return {"version": STATE_VERSION, "class": cls, "seed": seed, "n": n, "params": params, "bank": "stand-in"}


def claim_rounds(root: str, seed: int, rounds: int, barrier: Barrier, results: Any) -> None:
    """In a process of its own: for each round r, wait at `barrier` (all racers start at once), then claim
    ROOT/r for a compose run of `seed` (claim_output); put (r, seed, 'claimed' or the refusal) on `results`."""
    for r in range(rounds):
        barrier.wait(timeout=60)
        try:
            claim_output(Path(root) / str(r), "PMY", compose_state(seed), overwrite=False)
            results.put((r, seed, "claimed"))
        except UserError as e:
            results.put((r, seed, str(e)))
