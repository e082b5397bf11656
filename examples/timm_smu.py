"""Train a timm ResNet-18 whose every activation is SMU, named like any timm activation.

    python examples/timm_smu.py                 # SMU with the authors' alpha=0.01, mu=2.5
    python examples/timm_smu.py --act lpflu --act-kwargs ""   # any registered name, its defaults

``import actplug`` puts its names into timm's activation table, so ``timm.create_model(...,
act_layer="smu")`` works; keyword arguments go through ``functools.partial`` on the class. The data
is scikit-learn's 8x8 handwritten digits, upsampled to 3x32x32. The optimizer gets its groups from
``actplug.param_groups``: SMU's trainable mu never decays and has its own learning rate. Runs on a
CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from typing import Any

import torch
import torch.nn.functional as F

import actplug


def parse_kwargs(text: str) -> dict[str, float]:
    """``"alpha=0.01,mu=2.5"`` -> ``{"alpha": 0.01, "mu": 2.5}``."""
    kwargs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--act-kwargs expects key=value pairs, got {item!r}")
        kwargs[key.strip()] = float(value)
    return kwargs


def load_digits_32(seed: int, test_fraction: float = 0.25):
    """scikit-learn's digits as float tensors (N, 3, 32, 32), normalised, split into train and test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in evaluation mode."""
    model.eval()
    losses, correct = [], 0
    for i in range(0, len(y), batch_size):
        logits = model(x[i : i + batch_size])
        losses.append(F.cross_entropy(logits, y[i : i + batch_size], reduction="sum"))
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return float(torch.stack(losses).sum()) / len(y), correct / len(y)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="timm model name (default: resnet18)")
    parser.add_argument("--act", default="smu", help="registered activation name (default: smu)")
    parser.add_argument(
        "--act-kwargs",
        type=parse_kwargs,
        default="alpha=0.01,mu=2.5",
        help='constructor arguments, "key=value,..." (default: the SMU authors\' "alpha=0.01,mu=2.5")',
    )
    parser.add_argument("--steps", type=int, default=40, help="training steps (default: 40)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--act-lr", type=float, default=1e-2, help="learning rate of the activation parameters")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        actplug.get(args.act)
    except KeyError as exc:
        parser.error(f"--act: {exc}")

    import timm  # after actplug or before: either order works

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = load_digits_32(args.seed)

    # By name when there is nothing to pass, else the registered class with its arguments bound.
    act_layer = functools.partial(actplug.get(args.act), **args.act_kwargs) if args.act_kwargs else args.act
    model = timm.create_model(args.model, pretrained=False, num_classes=10, act_layer=act_layer)
    act_cls = actplug.get(args.act)
    acts = [m for m in model.modules() if isinstance(m, act_cls)]
    print(f"{args.model} with act_layer={args.act!r} {args.act_kwargs or ''}: {len(acts)} {act_cls.__name__} modules")
    if acts:
        print(f"  first one: {acts[0]}")

    groups = actplug.param_groups(model, weight_decay=args.weight_decay, act_lr=args.act_lr)
    print("  optimizer groups: " + ", ".join(f"{g['name']} ({len(g['params'])} tensors)" for g in groups))
    optimizer = torch.optim.AdamW(groups, lr=args.lr)

    test_loss_before, test_acc_before = evaluate(model, x_test, y_test)
    print(f"before training: test loss {test_loss_before:.3f}, accuracy {test_acc_before:.3f}")
    losses = []
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, len(y_train), (args.batch_size,), generator=generator)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step + 1:4d}/{args.steps}: train loss {losses[-1]:.3f}")
    test_loss, test_acc = evaluate(model, x_test, y_test)
    act_param_ids = {id(p) for m in acts for p in m.parameters()}
    window = max(1, min(5, args.steps // 4))
    results = {
        "model": args.model,
        "act": args.act,
        "act_kwargs": args.act_kwargs,
        "n_activations": len(acts),
        "steps": args.steps,
        "train_losses": losses,
        "train_loss_start": sum(losses[:window]) / window,
        "train_loss_end": sum(losses[-window:]) / window,
        "test_loss_before": test_loss_before,
        "test_accuracy_before": test_acc_before,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "act_parameters": {name: p.item() for name, p in model.named_parameters() if id(p) in act_param_ids},
        "seconds": time.perf_counter() - start,
    }
    print(
        f"after {args.steps} steps: train loss {results['train_loss_start']:.3f} -> {results['train_loss_end']:.3f}, "
        f"test loss {test_loss:.3f}, test accuracy {test_acc:.3f} ({results['seconds']:.1f} s)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
