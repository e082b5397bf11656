"""Which timm model families resolve ``act_layer=NAME``, which take only a class, which ignore it.

For every model module of timm (``timm.models.<family>``) it picks one small registered model and,
in a fresh interpreter with a time limit, builds it (pretrained=False, on the meta device where
that works, else on the CPU) three times: plain, with ``act_layer="srelu"`` (a name only actplug
defines) and with ``act_layer=actplug.get("srelu")`` (the class). It counts the SReLU modules and
the activation modules left of the kinds ``actplug.swap`` knows (ReLU, GELU, SiLU, Hardswish, ...),
and writes a JSON file and a Markdown table (docs/timm_families.md takes the table).

    .venv/bin/python scripts/check_timm_families.py --jobs 2 --json timm_families.json --markdown table.md

Not part of the test suite: it takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SIZE_WORDS = (
    "atto",
    "femto",
    "pico",
    "nano",
    "micro",
    "tiny",
    "xxsmall",
    "xsmall",
    "small",
    "xxs",
    "xs",
    "mini",
    "lite",
    "b0",
    "t",
    "s",
)

#: Families whose best-known small model the name heuristic would miss.
PREFERRED = {
    "efficientnet": "efficientnet_b0",
    "mlp_mixer": "mixer_s16_224",
    "metaformer": "poolformer_s12",
    "mobilenetv3": "mobilenetv3_small_100",
    "nfnet": "nf_resnet26",
    "regnet": "regnetx_002",
    "senet": "legacy_seresnet18",
    "tresnet": "tresnet_m",
}

WORKER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
import actplug
import timm
from actplug.integrations.swap import default_replace_types

name = sys.argv[1]
SReLU = actplug.get("srelu")
OTHERS = tuple(t for t in default_replace_types() if not issubclass(t, SReLU))


def build(**kwargs):
    errors = []
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                return timm.create_model(name, pretrained=False, **kwargs), device, None
        except Exception as exc:  # noqa: BLE001 - recorded
            errors.append(f"{type(exc).__name__}: {exc}")
    return None, None, errors[-1]


def describe(model):
    n_srelu = sum(isinstance(m, SReLU) for m in model.modules())
    n_other = sum(isinstance(m, OTHERS) for m in model.modules())
    others = sorted({type(m).__name__ for m in model.modules() if isinstance(m, OTHERS)})
    return {"srelu": n_srelu, "other": n_other, "other_types": others}


out = {"model": name}
t0 = time.perf_counter()
base, device, error = build()
if base is None:
    out["baseline_error"] = error[:300]
else:
    out["device"] = device
    out["params_m"] = round(sum(p.numel() for p in base.parameters()) / 1e6, 2)
    out["baseline"] = describe(base)
    del base
    for label, act in (("name", "srelu"), ("class", SReLU)):
        model, _, error = build(act_layer=act)
        out[label] = describe(model) if model is not None else {"error": error[:300]}
        del model
out["seconds"] = round(time.perf_counter() - t0, 1)
print("RESULT " + json.dumps(out))
"""


def pick_model(names: list[str]) -> str:
    """The registered name most likely to be the family's smallest model."""

    def rank(name: str) -> tuple[int, int, str]:
        tokens = re.split(r"[_\-.]", name)
        for i, word in enumerate(SIZE_WORDS):
            if (len(word) >= 3 and word in name) or word in tokens:
                return (i, len(name), name)
        return (len(SIZE_WORDS), len(name), name)

    return min(names, key=rank)


def families() -> dict[str, str]:
    """family (timm.models module) -> the model name picked for it."""
    from timm.models import _registry

    return {
        family: PREFERRED[family] if PREFERRED.get(family) in models else pick_model(sorted(models))
        for family, models in sorted(_registry._module_to_models.items())
    }


def check(model: str, timeout: float) -> dict:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, model], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"model": model, "timeout": timeout}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"model": model, "crash": (proc.stderr or proc.stdout)[-300:], "seconds": time.perf_counter() - start}
    return json.loads(lines[-1][len("RESULT ") :])


def verdict(result: dict, key: str) -> str:
    """One cell of the table for ``key`` in ("name", "class")."""
    entry = result.get(key)
    if entry is None:
        return "-"
    if "error" in entry:
        error = entry["error"]
        if "unexpected keyword argument 'act_layer'" in error:
            return "rejected (TypeError: no act_layer)"
        if "not callable" in error:
            return "error: needs a class (str not callable)"
        if "non-linearity constants" in error:
            return "error: needs a gamma constant (nfnet's _nonlin_gamma)"
        return "error: " + error.splitlines()[0][:90]
    if entry["srelu"] == 0:
        return "accepted, ignored"
    if entry["other"] == 0:
        return f"all ({entry['srelu']})"
    return f"partly ({entry['srelu']} SReLU; {entry['other']} {'/'.join(entry['other_types'])} kept)"


def markdown(results: dict[str, dict]) -> str:
    rows = ['| family (timm.models.*) | model checked | params (M) | `act_layer="srelu"` | `act_layer=SReLU` |']
    rows.append("|---|---|---|---|---|")
    for family, result in results.items():
        if "timeout" in result:
            rows.append(f"| {family} | {result['model']} | | timed out | timed out |")
            continue
        if "crash" in result or "baseline_error" in result:
            why = result.get("baseline_error") or result.get("crash", "")
            rows.append(f"| {family} | {result['model']} | | does not build: {why.splitlines()[-1][:80]} | |")
            continue
        rows.append(
            f"| {family} | {result['model']} | {result['params_m']} | {verdict(result, 'name')} | "
            f"{verdict(result, 'class')} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="models checked at once (default: 2)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per model, imports included")
    parser.add_argument("--only", nargs="*", default=None, help="check only these families")
    parser.add_argument("--json", default=None, help="write the raw results here")
    parser.add_argument("--markdown", default=None, help="write the table here")
    args = parser.parse_args(argv)

    picked = families()
    if args.only:
        unknown = sorted(set(args.only) - set(picked))
        if unknown:
            parser.error(f"unknown families {unknown}; known: {', '.join(picked)}")
        picked = {f: picked[f] for f in args.only}
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {family: pool.submit(check, model, args.timeout) for family, model in picked.items()}
        for family, future in futures.items():
            results[family] = future.result()
            print(f"{family:28s} {picked[family]:40s} name: {verdict(results[family], 'name')}", flush=True)
    table = markdown(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
