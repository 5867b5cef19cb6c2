"""Learning-rate schedules, one rate per SGD step, computed once before training."""

from __future__ import annotations

import numpy as np

SCHEDULES = ("cosine", "constant")


def learning_rates(schedule: str, lr: float, total_steps: int) -> np.ndarray:
    """The learning rate of each of `total_steps` steps.

    cosine: lr * (1 + cos(pi * t / T)) / 2, from lr down to near 0 at the last
    step (SGDR, Loshchilov & Hutter 2017, without restarts); constant: lr.
    """
    if schedule == "constant":
        return np.full(total_steps, lr)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + np.cos(np.pi * np.arange(total_steps) / total_steps))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
