"""The learning-rate schedule of lpflu.txt §5.1: linear warm-up, linear decay, then a constant floor.

On CIFAR the paper scales the rate from 0 to 1 over the first 390 steps (one epoch), decays it
linearly to 0.01 by step 21450 (of 31200: 68.75% of training) and keeps 0.01 after that.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

#: Where the decay ends, as a fraction of all steps (21450 / (80 epochs x 390 steps)).
DECAY_END_FRACTION = 21450 / 31200
#: The scale the decay ends at and keeps.
FINAL_SCALE = 0.01


def lr_scale(step: int, total_steps: int, warmup_steps: int) -> float:
    """The factor on the base learning rate at optimiser step ``step`` (0-based)."""
    decay_end = max(warmup_steps + 1, round(total_steps * DECAY_END_FRACTION))
    if step < warmup_steps:
        return step / warmup_steps
    if step >= decay_end:
        return FINAL_SCALE
    progress = (step - warmup_steps) / (decay_end - warmup_steps)
    return 1.0 - (1.0 - FINAL_SCALE) * progress


def warmup_linear_decay(optimizer: Optimizer, total_steps: int, warmup_steps: int) -> LambdaLR:
    """A scheduler stepping ``lr_scale`` once per optimiser step over ``total_steps`` steps."""
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be >= 1")
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1) if total_steps > 1 else 0
    return LambdaLR(optimizer, lambda step: lr_scale(step, total_steps, warmup_steps))
