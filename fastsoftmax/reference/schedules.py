"""Learning-rate schedules: the rate of one SGD step, from the schedule's parameters.

This is the one definition of the formulas. No per-step table is built: the
CPU backend compiles ``learning_rate`` itself (Numba,
fastsoftmax/backends/cpu/rows.py), the CUDA kernels evaluate the same
expression (kernels/schedules.cuh, called by sgd_epoch and sgd_step_many),
and the reference, the SGD loop's records and the tests call it here. Each
computes the rate in float64 and rounds it once to the compute dtype.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant")
# A schedule's kind, as the kernels take it: its index in SCHEDULES (the CUDA
# source spells COSINE as 0).
COSINE, CONSTANT = range(len(SCHEDULES))


def kind_of(schedule: str) -> int:
    """The kind of a schedule named in SCHEDULES."""
    return SCHEDULES.index(schedule)


def learning_rate(kind: int, peak: float, total_steps: int, step: int) -> float:
    """The float64 learning rate of step `step` (0-based, counted over the whole run) of `total_steps`.

    cosine: peak * 0.5 * (1 + cos(pi * step / total_steps)), from peak down to
    near 0 at the last step (SGDR, Loshchilov & Hutter 2017, without restarts);
    constant: peak. Plain arithmetic, so that Numba compiles this very function.
    """
    if kind == COSINE:
        return peak * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    return peak
