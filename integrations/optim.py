"""``actplug.param_groups``: optimizer groups that give activation parameters their own treatment."""

from __future__ import annotations

from typing import Any

from torch import nn

from actplug.registry import registry


def param_groups(
    model: nn.Module,
    weight_decay: float = 0.0,
    act_lr: float | None = None,
    act_weight_decay: float = 0.0,
    *,
    no_decay_bias_and_norm: bool = True,
) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim``: activation parameters (SMU's mu, ASH's z and alpha, ...)
    never decay unless ``act_weight_decay`` says so and may have their own ``act_lr``.

    lpflu.txt argues that trainable scalar parameters need finer learning rates than weight
    tensors. As in timm, biases and other 1-D parameters (norm scales) do not decay either unless
    ``no_decay_bias_and_norm=False``. Groups carry a ``name`` ("decay", "no_decay", "activation");
    empty groups are left out.
    """
    act_types = tuple(info.cls for info in registry)
    act_params = {id(p) for m in model.modules() if isinstance(m, act_types) for p in m.parameters()}
    decay, no_decay, act = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in act_params:
            act.append(param)
        elif no_decay_bias_and_norm and (param.ndim <= 1 or name.endswith(".bias")):
            no_decay.append(param)
        else:
            decay.append(param)
    act_group: dict[str, Any] = {"name": "activation", "params": act, "weight_decay": act_weight_decay}
    if act_lr is not None:
        act_group["lr"] = act_lr
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        act_group,
    ]
    return [group for group in groups if group["params"]]
