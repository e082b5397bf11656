"""Issue 18, weights in: ``actplug finetune ... --pretrained SOURCE [--fit]`` for every recipe model.

Every weights file is written here from a natively built, randomly initialised timm or torchvision
network; tensor equality after the build proves the weights reached the model. Framework names are
fetched through the framework's own download function, replaced by one that serves a file written
here, while any socket connection fails the test: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from actplug.integrations.swap import count_activations
from safetensors.torch import save_file

import actplug
from actplug.finetune import FinetuneConfig, models
from actplug.finetune.config import RESUME_KEYS
from actplug.finetune.errors import FinetuneError

SMU = actplug.get("smu")


@pytest.fixture(scope="module", autouse=True)
def _eager_kernels():
    """The plain-math kernels: the compiled CPU path would spend seconds compiling for each new shape."""
    from actplug.kernels import settings

    with settings.use(cpu="eager"):
        yield


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Any attempt to reach the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a socket connection was attempted: something tried to download")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    """timm's resnet18 as timm builds it (random init, with its classifier), saved as .safetensors."""
    import timm

    torch.manual_seed(1)
    state = {k: v.clone() for k, v in timm.create_model("resnet18").state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(state, str(path))
    return state, path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_seg(pretrained: str, *, encoder: str = "resnet18", num_classes: int = 4, **kwargs):
    report: dict = {}
    net = models.build_model(
        "segmentation",
        "unet",
        num_classes=num_classes,
        act="smu",
        act_kwargs={"mu": 2.5},
        encoder=encoder,
        image_size=64,
        pretrained=pretrained,
        report=report,
        **kwargs,
    )
    return net, report


def _only_smu(net: torch.nn.Module) -> None:
    counts = count_activations(net)
    assert set(counts) == {"SMU"}, counts
    assert all(float(m.mu.detach()) == 2.5 for m in net.modules() if isinstance(m, SMU))


def test_timm_encoder_safetensors_reaches_the_encoder(resnet18, caplog):
    state, path = resnet18
    with caplog.at_level(logging.INFO, logger="actplug"):
        net, report = _build_seg(str(path))
    encoder = net.encoder.model
    assert torch.equal(encoder.conv1.weight, state["conv1.weight"])
    assert torch.equal(encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert torch.equal(encoder.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    _only_smu(net)  # loaded with ReLU in place, then every slot swapped
    record = report["pretrained"]
    assert record["kind"] == "file" and record["sha256"] == _sha256(path)
    assert record["loaded_into"] == "the encoder (timm resnet18)"
    assert (record["tensors_loaded"], record["missing"], record["unexpected"]) == (120, 0, 2)
    assert sorted(record["unexpected_keys"]) == ["fc.bias", "fc.weight"]
    assert report["fit"] is None
    assert "loaded 120 of 120 tensors" in caplog.text and "fc.weight" in caplog.text


def test_wrapped_pth_with_ddp_prefixes_loads_the_same(resnet18, tmp_path):
    state, _ = resnet18
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net, report = _build_seg(str(path))
    assert torch.equal(net.encoder.model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert report["pretrained"]["tensors_loaded"] == 120 and report["pretrained"]["sha256"] == _sha256(path)


def test_timm_feature_names_match_across_underscores(tmp_path):
    """timm's feature extractor renames ``stages.1`` to ``stages_1``; a plain timm file still fits."""
    import timm

    torch.manual_seed(2)
    state = timm.create_model("convnext_atto").state_dict()
    path = tmp_path / "convnext_atto.safetensors"
    save_file(state, str(path))
    net, report = _build_seg(str(path), encoder="convnext_atto")
    conv = net.encoder.model.stages_1.blocks[0].conv_dw.weight
    assert torch.equal(conv, state["stages.1.blocks.0.conv_dw.weight"])
    assert report["pretrained"]["missing"] == 0
    _only_smu(net)  # convnext's GELUs included


def test_whole_model_file_fills_the_decoder_and_names_a_head_of_another_shape(resnet18, tmp_path, caplog):
    import segmentation_models_pytorch as smp

    torch.manual_seed(3)
    whole = smp.Unet("tu-resnet18", encoder_weights=None, classes=5).state_dict()
    path = tmp_path / "unet.pt"
    torch.save({"model": whole}, path)
    with caplog.at_level(logging.WARNING, logger="actplug"):
        net, report = _build_seg(str(path), num_classes=4)
    record = report["pretrained"]
    assert record["loaded_into"] == "the whole model"
    key = "decoder.blocks.0.conv1.0.weight"
    assert torch.equal(net.state_dict()[key], whole[key])
    assert torch.equal(net.encoder.model.conv1.weight, whole["encoder.model.conv1.weight"])
    assert [m.split(" ")[0] for m in record["shape_mismatch"]] == [
        "segmentation_head.0.weight",
        "segmentation_head.0.bias",
    ]
    assert "[5, 16, 3, 3]" in record["shape_mismatch"][0] and "[4, 16, 3, 3]" in record["shape_mismatch"][0]
    assert "segmentation_head.0.weight" in caplog.text and "differ in shape" in caplog.text
    _only_smu(net)


def test_vgg16_bn_backbone_reaches_ssd300(tmp_path):
    """A file laid out as torchvision's ``vgg16_bn`` (``features.*``, plus its classifier) feeds SSD300's VGG."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(4)
    features = make_layers(cfgs["D"], batch_norm=True)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(8, 8)  # the real one is 4096 x 25088; only its name matters
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    report: dict = {}
    net = models.build_model(
        "detection", "ssd300_vgg16bn", num_classes=3, act="smu", image_size=268, pretrained=str(path), report=report
    )
    assert torch.equal(net.backbone.features[0].weight, state["features.0.weight"])  # conv1_1
    conv5_3 = net.backbone.extra[0][7]  # after maxpool4: conv5_1, bn, relu, conv5_2, bn, relu, conv5_3
    assert torch.equal(conv5_3.weight, state["features.40.weight"])
    record = report["pretrained"]
    assert (record["loaded_into"], record["key_prefix"], record["tensors_loaded"]) == (
        "the VGG16-BN backbone",
        "features.",
        91,
    )
    assert record["unexpected_keys"] == ["classifier.0.weight"]
    assert count_activations(net) == {"SMU": 23}


def test_mobilenet_v3_backbone_reaches_ssdlite320(tmp_path):
    import torchvision

    torch.manual_seed(5)
    state = torchvision.models.mobilenet_v3_large().state_dict()  # full tail, as ImageNet weights have it
    path = tmp_path / "mobilenet_v3_large.safetensors"
    save_file(state, str(path))
    report: dict = {}
    net = models.build_model(
        "detection", "ssdlite320", num_classes=3, act="smu", image_size=64, pretrained=str(path), report=report
    )
    assert torch.equal(net.backbone.features[0][0][0].weight, state["features.0.0.weight"])
    assert torch.equal(net.backbone.features[1][-1][0].weight, state["features.16.0.weight"])  # the last 960-ch conv
    assert report["pretrained"]["tensors_loaded"] == len(state) and report["pretrained"]["missing"] == 0
    assert count_activations(net) == {"SMU": 63}
    net.eval()
    with torch.no_grad():
        (out,) = net([torch.rand(3, 64, 64)])
    assert set(out) == {"boxes", "scores", "labels"}


def test_timm_tag_is_fetched_by_timm(resnet18, monkeypatch):
    """``--pretrained a1_in1k`` goes through timm's own Hugging Face Hub loader (served a file written here)."""
    import timm.models._hub

    state, path = resnet18
    asked: list[tuple[str, str]] = []

    def hub_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", hub_download)
    net, report = _build_seg("a1_in1k")
    assert asked == [("timm/resnet18.a1_in1k", "model.safetensors")]
    assert torch.equal(net.encoder.model.conv1.weight, state["conv1.weight"])
    record = report["pretrained"]
    assert (record["kind"], record["name"], record["hf_hub_id"]) == (
        "timm",
        "resnet18.a1_in1k",
        "timm/resnet18.a1_in1k",
    )
    assert record["url"].endswith("resnet18_a1_0-d63eafa0.pth")
    _only_smu(net)


def test_torchvision_weights_are_fetched_by_torchvision(tmp_path, monkeypatch):
    import torchvision
    import torchvision.models._api

    torch.manual_seed(6)
    state = torchvision.models.mobilenet_v3_large().state_dict()
    asked: list[str] = []
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_large-8738ca79.pth"

    def from_url(url, *args, **kwargs):  # as torch.hub does: the file into its cache, then its state dict
        asked.append(url)
        cached.parent.mkdir(parents=True)
        torch.save(state, cached)
        return torch.load(cached, weights_only=True)

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", from_url)
    report: dict = {}
    net = models.build_model(
        "detection", "ssdlite320", num_classes=3, act="smu", image_size=64, pretrained="IMAGENET1K_V1", report=report
    )
    assert asked == [torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1.url]
    assert torch.equal(net.backbone.features[0][0][0].weight, state["features.0.0.weight"])
    record = report["pretrained"]
    assert (record["kind"], record["name"]) == ("torchvision", "MobileNet_V3_Large_Weights.IMAGENET1K_V1")
    assert record["url"] == asked[0] and record["tensors_loaded"] == len(state)
    assert record["sha256"] == _sha256(cached)  # the file in torchvision's cache


def test_a_failed_fetch_names_the_offline_fix(monkeypatch):
    import timm.models._hub

    def offline(*args, **kwargs):
        raise OSError("cannot reach huggingface.co")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", offline)
    with pytest.raises(FinetuneError, match=r"timm could not fetch or load .*resnet18\.a1_in1k.*local \.safetensors"):
        _build_seg("resnet18.a1_in1k")


@pytest.mark.parametrize(
    ("task", "model", "encoder", "source", "name"),
    [
        ("segmentation", "unet", "resnet18", "default", "resnet18.a1_in1k"),  # timm's default tag
        ("segmentation", "unet", "resnet18", "imagenet", "resnet18.a1_in1k"),
        ("segmentation", "deeplabv3plus", "resnet18", "resnet18.tv_in1k", "resnet18.tv_in1k"),
        ("segmentation", "unet", "resnet18.gluon_in1k", "default", "resnet18.gluon_in1k"),  # the encoder's tag
        ("detection", "ssd300_vgg16bn", "", "VGG16_BN_Weights.IMAGENET1K_V1", "VGG16_BN_Weights.IMAGENET1K_V1"),
        ("detection", "ssd300_vgg16bn", "", "DEFAULT", "VGG16_BN_Weights.IMAGENET1K_V1"),
        ("detection", "ssdlite320", "", "default", "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
        ("detection", "ssdlite320", "", "imagenet1k_v1", "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
    ],
)
def test_weights_names_resolve_offline(task, model, encoder, source, name):
    resolved = models.check_pretrained(task, model, encoder, source)
    assert resolved.name == name and resolved.url.startswith("https://")


@pytest.mark.parametrize(
    ("task", "model", "source", "message"),
    [
        ("segmentation", "unet", "a9_in1k", r"no weights 'resnet18\.a9_in1k'.*a1_in1k, a2_in1k.*tv_in1k"),
        (
            "segmentation",
            "unet",
            "resnet50.a1_in1k",
            r"weights of timm's resnet50, but the encoder is resnet18.*--encoder resnet50",
        ),
        (
            "detection",
            "ssdlite320",
            "IMAGENET9K_V1",
            r"no member 'IMAGENET9K_V1'.*MobileNet_V3_Large_Weights\.IMAGENET1K_V2",
        ),
        ("detection", "ssd300_vgg16bn", "MobileNet_V3_Large_Weights.IMAGENET1K_V1", r"VGG16_BN_Weights\.IMAGENET1K_V1"),
        ("segmentation", "unet", "{tmp}/missing.safetensors", r"missing\.safetensors: no such file"),
        ("segmentation", "unet", "{tmp}/weights.ckpt", r"\.ckpt file is not read.*renamed to \.pth"),
        ("detection", "ssdlite320", "{tmp}", r"is a folder"),
    ],
)
def test_bad_sources_are_refused_with_the_valid_choices(tmp_path, task, model, source, message):
    (tmp_path / "weights.ckpt").write_bytes(b"\x00")
    with pytest.raises(FinetuneError, match=message):
        models.check_pretrained(task, model, "resnet18", source.replace("{tmp}", str(tmp_path)))


def test_a_file_with_no_matching_keys_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"transformer.wte.weight": torch.zeros(4, 2)}, str(path))
    with pytest.raises(FinetuneError) as caught:
        _build_seg(str(path))
    text = str(caught.value)
    assert str(path) in text and "transformer.wte.weight" in text and "conv1.weight" in text
    assert "the encoder (timm resnet18)" in text and "encoder.model." in text


def test_a_file_whose_matching_names_all_differ_in_shape_is_refused(tmp_path):
    import timm

    path = tmp_path / "resnet18_1ch.safetensors"
    save_file({"conv1.weight": timm.create_model("resnet18", in_chans=1).conv1.weight.detach()}, str(path))
    with pytest.raises(FinetuneError, match=r"conv1\.weight \(file \[64, 1, 7, 7\], model \[64, 3, 7, 7\]\)"):
        _build_seg(str(path))


@pytest.mark.parametrize("content", [b"not a pickle at all", b""])
def test_an_unreadable_file_is_refused(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(FinetuneError, match=r"broken\.pth cannot be read as a state dict.*torch\.save"):
        _build_seg(str(path))


def test_fit_without_pretrained_says_why(tmp_path):
    with pytest.raises(FinetuneError, match=r"--fit .*nothing learned to preserve.*--pretrained SOURCE"):
        FinetuneConfig(task="segmentation", output=tmp_path, act="smu", fit=True)
    with pytest.raises(FinetuneError, match=r"nothing learned to preserve"):
        models.build_model(
            "segmentation", "unet", num_classes=4, act="smu", encoder="resnet18", image_size=64, fit=True
        )


def test_pretrained_and_fit_must_match_on_resume(tmp_path):
    assert {"pretrained", "fit"} <= set(RESUME_KEYS)
    config = FinetuneConfig(task="segmentation", output=tmp_path, act="smu", pretrained="w.pth", fit=True)
    saved = {**config.to_json(), "pretrained": "other.pth"}
    assert config.resume_mismatches(saved) == ["pretrained: 'other.pth' before, 'w.pth' now"]
    older = {k: v for k, v in FinetuneConfig(task="segmentation", output=tmp_path, act="smu").to_json().items()}
    del older["pretrained"], older["fit"]  # a config.json written before the options existed
    plain = FinetuneConfig(task="segmentation", output=tmp_path, act="smu")
    assert plain.resume_mismatches(older) == []


def test_a_bad_source_fails_before_data_or_model(tmp_path, capsys):
    from actplug.cli import main

    out = tmp_path / "out"
    code = main(["finetune", "detection", "--act", "smu", "--pretrained", "IMAGENET2K", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "MobileNet_V3_Large_Weights has no member 'IMAGENET2K'" in err, err
    assert not out.exists()


def _synthetic(task: str, size: int):
    from actplug.finetune import data

    spec = data.parse_data_spec("synthetic", task)
    return data.build_datasets(spec, task, size, 0, synthetic_train=6, synthetic_val=2)


def test_calibration_batch_is_a_few_training_images_chosen_by_the_seed():
    train = _synthetic("segmentation", 32).train
    batch = models.calibration_batch("segmentation", train, seed=0)
    assert batch.shape == (4, 3, 32, 32)
    assert torch.equal(batch, models.calibration_batch("segmentation", train, seed=0))
    assert not torch.equal(batch, models.calibration_batch("segmentation", train, seed=1))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:4]
    assert torch.equal(batch[0], train[int(order[0])][0])


def test_fit_on_a_detector_runs_it_on_a_list_of_images(tmp_path):
    """SSDLite's forward takes a list of images: the calibration is a tuple holding one, and every slot is fitted."""
    import torchvision

    torch.manual_seed(7)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), path)
    calibration = models.calibration_batch("detection", _synthetic("detection", 64).train, seed=0)
    assert isinstance(calibration, tuple) and len(calibration[0]) == 4 and calibration[0][0].shape == (3, 64, 64)
    report: dict = {}
    net = models.build_model(
        "detection",
        "ssdlite320",
        num_classes=3,
        act="smu",
        image_size=64,
        pretrained=str(path),
        fit=True,
        calibration=calibration,
        report=report,
    )
    assert count_activations(net) == {"SMU": 63}
    fitted = report["fit"]
    assert len(fitted) == 63 and {r["inputs"] for r in fitted} == {"calibration"}
    assert {r["source"].split("(")[0] for r in fitted} == {"ReLU6", "Hardswish", "ReLU"}
    assert net.training  # the fit ran the model in eval mode and left it as built
    net.eval()
    with torch.no_grad():
        detections = net(list(calibration[0]))
    assert all(torch.isfinite(d["scores"]).all() and torch.isfinite(d["boxes"]).all() for d in detections)


def test_done_when_command_loads_swaps_with_fit_and_finetunes(resnet18, tmp_path):
    """The issue's command, cheap: resnet18 encoder from a file, SMU fitted to the ReLUs, one epoch."""
    _, path = resnet18
    out = tmp_path / "run"
    argv = ["segmentation", "--encoder", "resnet18", "--pretrained", str(path), "--fit", "--act", "smu"]
    argv += ["--data", "synthetic", "--epochs", "1", "--image-size", "64", "--batch-size", "2"]
    argv += ["--train-samples", "4", "--val-samples", "2", "--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACTPLUG_CPU_KERNELS": "eager", "HF_HUB_OFFLINE": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run(
        [sys.executable, "-m", "actplug", "finetune", *argv], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["pretrained"]["sha256"] == _sha256(path) == config["pretrained_weights"]["sha256"]
    assert metrics["pretrained"]["tensors_loaded"] == 120
    assert (config["pretrained"], config["fit"]) == (str(path), True)
    fitted = metrics["fit"]
    assert len(fitted) == 27  # every ReLU slot of the resnet18 U-Net, each fitted
    assert all(r["source"].startswith("ReLU") and r["target"] == "smu" for r in fitted)
    # no worse than SMU's defaults anywhere (equal where a layer sees no negative input: the residual ReLUs
    # behind timm's zero-initialised last BatchNorm of each block), and far better where it matters
    assert all(r["inputs"] == "calibration" and r["gap"] <= r["default_gap"] + 1e-6 for r in fitted)
    assert max(r["gap"] for r in fitted) < 1e-6 < max(r["default_gap"] for r in fitted)
    assert all(r["values"]["mu"] > 1e3 for r in fitted)  # SMU tends to ReLU as mu grows (alpha 0)
    assert "encoder.model.act1" in {r["layer"] for r in fitted}
    assert len(metrics["history"]) == 1 and "miou" in metrics["final"]
