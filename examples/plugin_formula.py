"""A third party's activations, declared by formula, used like the built-ins (examples/plugin/).

    python examples/plugin_formula.py

Installed (``pip install ./examples/plugin``), the package's entry point registers Serf and
Swish-beta when actplug first looks a name up; here the same module is added at run time
(``actplug.add_plugin``), as a notebook would. The script shows what the formulas get: a module and
a functional twin, only x saved for backward, the fused CPU kernels once compiled (in the
background), and timm, torchvision and transformers building models with the names. A few steps of
a timm ResNet-18 with Swish-beta on scikit-learn's digits follow. Runs on a CPU in about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import actplug


def saved_ratio(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Bytes autograd keeps for one call, over x's bytes."""
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):
        module(x)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
    return sum(storages.values()) / (x.numel() * x.element_size())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if "serf" not in actplug.names():  # not pip-installed: add the same plugin module at run time
        sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin"))
        import actplug_serf

        actplug.add_plugin(actplug_serf)
    for name in ("serf", "swish_beta"):
        info = actplug.info(name)
        print(f"{name}: {info.formula}  (trainable: {', '.join(info.parameters) or '-'}; plugin {info.plugin!r})")
    swish = actplug.create("swish-beta", beta=1.5)
    print(f"  module: {swish}; functional: actplug.functional.serf{actplug.functional.serf.__signature__}")

    x = torch.randn(32, 64, 32, 32, requires_grad=True)  # 2M elements: large enough for the fused path
    results = {"saved_over_input": {n: saved_ratio(actplug.create(n), x) for n in ("serf", "swish_beta")}}
    print(
        "saved for backward / input bytes: " + ", ".join(f"{n} {r:.2f}" for n, r in results["saved_over_input"].items())
    )

    for name in ("serf", "swish_beta"):  # first calls run the eager math while the kernels compile
        actplug.create(name)(x).sum().backward()
    actplug.kernels.wait()
    before = sum(actplug.kernels.compiler.calls.values())
    actplug.create("serf")(x).sum().backward()
    results["fused_calls"] = sum(actplug.kernels.compiler.calls.values()) - before
    print(f"compiled kernels: {[s['label'] for s in actplug.kernels.status() if s['state'] == 'ready']}")

    import timm
    import torchvision
    from transformers import BertConfig, BertModel

    tv = torchvision.models.resnet18(act_layer="serf", num_classes=10)
    tiny = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    bert = BertModel(BertConfig(**tiny, hidden_act="swish_beta"))
    Serf, SwishBeta = actplug.get("serf"), actplug.get("swish_beta")
    results["torchvision_serf"] = sum(isinstance(m, Serf) for m in tv.modules())
    results["bert_swish_beta"] = sum(isinstance(m, SwishBeta) for m in bert.modules())
    print(
        f"torchvision resnet18(act_layer='serf'): {results['torchvision_serf']} Serf modules; "
        f"BertModel(hidden_act='swish_beta'): {results['bert_swish_beta']}"
    )

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1).repeat(1, 3, 1, 1) / 16.0
    labels = torch.tensor(digits.target)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10, act_layer="swish_beta")
    optimizer = torch.optim.AdamW(actplug.param_groups(model, weight_decay=0.05, act_lr=1e-2), lr=2e-3)
    losses = []
    for _ in range(args.steps):
        idx = torch.randint(0, len(labels), (64,))
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    betas = [float(m.beta.detach()) for m in model.modules() if isinstance(m, SwishBeta)]
    results.update(train_losses=losses, betas=betas)
    print(
        f"timm resnet18 with swish_beta: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {args.steps} steps; "
        f"beta now {min(betas):.3f}..{max(betas):.3f} across {len(betas)} layers"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
