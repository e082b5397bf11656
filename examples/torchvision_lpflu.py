"""torchvision's ResNet-18 with LPFLU activations, trained on scikit-learn's digits on a CPU in under a minute.

    python examples/torchvision_lpflu.py                  # 60 steps
    python examples/torchvision_lpflu.py --steps 20 --json results.json

``torchvision.models.resnet18(act_layer="lpflu")`` builds the usual ResNet-18 and gives every ReLU
slot its own LPFLU module (torchvision's blocks call their ``relu`` twice, so the two call sites of a
block share one module). The 8x8 digit images are upsampled to 32x32 with three channels, the shape
of a small RGB image. The optimizer's parameter groups come from ``actplug.param_groups``: weights
decay, biases and norms do not, and activation parameters (none for LPFLU, SMU's ``mu`` or ASH's
``z`` and ``alpha`` otherwise) get ``--act-lr``. In training each LPFLU draws its slope
a ~ U(lower, upper) per call and tracks ``running_slope``, which evaluation then uses; the script
prints those values at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits

import actplug


def load_data(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0):
    """Digits as (N, 3, image_size, image_size) float tensors, standardised, split into train and test."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = ((x - x.mean()) / x.std()).expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (LPFLU uses its running slope)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss / len(y), correct / len(y)


def running_slopes(model: torch.nn.Module) -> dict[str, float]:
    """Each LPFLU module's running slope, by module name."""
    return {
        name: round(module.running_slope.item(), 6)
        for name, module in model.named_modules()
        if isinstance(module, actplug.nn.LPFLU)
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--act", default="lpflu", help="registered activation name (default: lpflu)")
    parser.add_argument("--lower", type=float, default=0.0, help="LPFLU: lower bound of the slope draw")
    parser.add_argument("--upper", type=float, default=0.02, help="LPFLU: upper bound of the slope draw")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--act-lr", type=float, default=None, help="learning rate of activation parameters")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_data(seed=args.seed)

    act_kwargs = {"lower": args.lower, "upper": args.upper} if args.act == "lpflu" else None
    model = torchvision.models.resnet18(weights=None, num_classes=10, act_layer=args.act, act_kwargs=act_kwargs)
    groups = actplug.param_groups(model, weight_decay=args.weight_decay, act_lr=args.act_lr)
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    print(f"resnet18 with {args.act}: " + ", ".join(f"{g['name']}: {len(g['params'])} tensors" for g in groups))

    initial_loss, initial_accuracy = evaluate(model, x_test, y_test)
    print(f"before training: test loss {initial_loss:.4f}, accuracy {initial_accuracy:.3f}")

    model.train()
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(y_train), generator=generator)
    position, losses = 0, []
    for step in range(1, args.steps + 1):
        if position + args.batch_size > len(order):
            order, position = torch.randperm(len(y_train), generator=generator), 0
        batch = order[position : position + args.batch_size]
        position += args.batch_size
        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            recent = losses[-args.log_every :]
            print(f"step {step:4d}: train loss {sum(recent) / len(recent):.4f}")

    final_loss, accuracy = evaluate(model, x_test, y_test)
    print(f"after {args.steps} steps: test loss {final_loss:.4f} (from {initial_loss:.4f}), accuracy {accuracy:.3f}")
    slopes = running_slopes(model)
    if slopes:
        print("LPFLU running_slope per module:")
        for name, value in slopes.items():
            print(f"  {name:22s} {value:.5f}")

    results = {
        "act": args.act,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "param_groups": {g["name"]: len(g["params"]) for g in groups},
        "train_losses": losses,
        "initial_test_loss": initial_loss,
        "initial_accuracy": initial_accuracy,
        "final_test_loss": final_loss,
        "accuracy": accuracy,
        "running_slopes": slopes,
        "lower": args.lower,
        "upper": args.upper,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
