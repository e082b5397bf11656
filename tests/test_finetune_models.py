"""Issue 5 models: smp U-Net / DeepLabV3+ on timm encoders and torchvision SSD300-VGG16-BN / SSDLite320,
with a registered activation or a PyTorch baseline in every activation slot, nothing downloaded, and
bad options refused with helpful messages before anything is built.

The models are built once per module (tiny sizes, CPU) and shared by the tests.
"""

from __future__ import annotations

import copy
import importlib
import socket

import pytest
import torch
from actplug.integrations.swap import count_activations

import actplug
from actplug.finetune import models
from actplug.finetune.errors import FinetuneError

SMU_KWARGS = {"mu": 2.5}
NUM_CLASSES = {"segmentation": 4, "detection": 3}  # shapes: background + 3 / 3 foreground classes

#: (task, model, image size used here). 268 is SSD300-VGG16-BN's smallest size (see test below).
CASES = [
    ("segmentation", "unet", 64),
    ("segmentation", "deeplabv3plus", 64),
    ("detection", "ssd300_vgg16bn", 268),
    ("detection", "ssdlite320", 64),
]

#: Activation slots per model, worked out from the architectures:
#: unet: resnet34 stem 1 + 16 BasicBlocks x 2 = 33 in the encoder, 5 decoder blocks x 2 = 10;
#: deeplabv3plus: the same 33, ASPP 5 branches + projection + separable conv = 7, high-res block 1,
#: fusion block 1; ssd300_vgg16bn: VGG16's 13 convolutions + fc6 + fc7 + 4 extra blocks x 2 = 23;
#: ssdlite320: torchvision's 24 ReLU6 + 20 Hardswish + 19 ReLU (squeeze-excitation's inner ReLU included).
SLOTS = {"unet": 43, "deeplabv3plus": 42, "ssd300_vgg16bn": 23, "ssdlite320": 63}

#: Everything that could fetch weights; each is replaced by a function that records the call and fails.
DOWNLOADERS = [
    ("torch.hub", "load_state_dict_from_url"),
    ("torch.hub", "download_url_to_file"),
    ("torchvision.models._api", "load_state_dict_from_url"),
    ("timm.models._builder", "load_state_dict_from_url"),
    ("timm.models._builder", "load_pretrained"),
    ("timm.models._hub", "download_url_to_file"),
    ("timm.models._hub", "hf_hub_download"),
    ("segmentation_models_pytorch.encoders", "hf_hub_download"),
    ("huggingface_hub", "hf_hub_download"),
]


@pytest.fixture(scope="module", autouse=True)
def _eager_kernels():
    """The plain-math kernels: the compiled CPU path would spend seconds compiling for each new shape."""
    from actplug.kernels import settings

    with settings.use(cpu="eager"):
        yield


@pytest.fixture(scope="module")
def built():
    """Every model with SMU (mu=2.5), and with ReLU on the meta device (only counted, never run), built
    while any download attempt fails loudly."""
    attempts: list[str] = []

    def refuse(what):
        def fail(*args, **kwargs):
            attempts.append(what)
            raise RuntimeError(f"{what} was called: a model tried to fetch weights")

        return fail

    with pytest.MonkeyPatch.context() as mp:
        for module_name, attr in DOWNLOADERS:
            module = importlib.import_module(module_name)
            if hasattr(module, attr):
                mp.setattr(module, attr, refuse(f"{module_name}.{attr}"))
        mp.setattr(socket.socket, "connect", refuse("socket.connect"))
        nets = {}
        for task, name, size in CASES:
            nets[name, "smu"] = models.build_model(
                task, name, num_classes=NUM_CLASSES[task], act="smu", act_kwargs=SMU_KWARGS, image_size=size
            )
            with torch.device("meta"):  # the same builders, without allocating or initialising weights
                nets[name, "relu"] = models.build_model(
                    task, name, num_classes=NUM_CLASSES[task], act="relu", image_size=size
                )
    return nets, attempts


def test_nothing_is_downloaded(built):
    nets, attempts = built
    assert len(nets) == 2 * len(CASES)
    assert attempts == []


@pytest.mark.parametrize("name", [name for _, name, _ in CASES])
def test_every_activation_slot_holds_the_chosen_activation(built, name):
    nets, _ = built
    assert count_activations(nets[name, "smu"]) == {"SMU": SLOTS[name]}
    assert count_activations(nets[name, "relu"]) == {"ReLU": SLOTS[name]}
    smus = [m for m in nets[name, "smu"].modules() if isinstance(m, actplug.get("smu"))]
    assert all(float(m.mu.detach()) == 2.5 for m in smus)
    # every slot got its own module, so each trains its own mu
    assert len({id(m) for m in smus}) == SLOTS[name]


@pytest.mark.parametrize("name", [name for _, name, _ in CASES])
def test_library_models_have_the_same_number_of_slots(name):
    """The counts above are the libraries' own: the plain models (built on the meta device, which
    allocates nothing) hold as many default activations."""
    with torch.device("meta"):
        if name == "ssdlite320":
            import torchvision

            plain = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
            expected = {"ReLU6": 24, "Hardswish": 20, "ReLU": 19}
        elif name == "ssd300_vgg16bn":
            import torchvision
            from torchvision.models.detection.ssd import SSDFeatureExtractorVGG

            plain = SSDFeatureExtractorVGG(torchvision.models.vgg16_bn(weights=None).features, highres=False)
            expected = {"ReLU": 23}
        else:
            import segmentation_models_pytorch as smp

            cls = smp.Unet if name == "unet" else smp.DeepLabV3Plus
            plain = cls("tu-resnet34", encoder_weights=None, classes=4)
            expected = {"ReLU": SLOTS[name]}
    assert count_activations(plain) == expected


def test_squeeze_excitation_gates_are_kept(built):
    nets, _ = built
    gates = [m for m in nets["ssdlite320", "smu"].modules() if isinstance(m, torch.nn.Hardsigmoid)]
    assert len(gates) == 8  # MobileNetV3-Large's squeeze-excitation blocks (reduced tail)


def test_the_timm_encoder_receives_act_layer():
    """Before any swap, the encoder built by timm already holds SMU; only smp's decoder has ReLU."""
    from actplug.finetune.models_segmentation import _smp_model

    net = _smp_model("unet", "resnet34", 4, "smu", SMU_KWARGS)
    assert count_activations(net.encoder) == {"SMU": 33}
    assert count_activations(net.decoder) == {"ReLU": 10}
    assert all(float(m.mu.detach()) == 2.5 for m in net.encoder.modules() if isinstance(m, actplug.get("smu")))


def test_a_baseline_that_takes_no_inplace_works_with_its_kwargs():
    """timm calls act_layer(inplace=True); nn.GELU takes no inplace, and its kwargs must still arrive."""
    net = models.build_model(
        "segmentation", "unet", num_classes=4, act="gelu", act_kwargs={"approximate": "tanh"}, image_size=64
    )
    gelus = [m for m in net.modules() if isinstance(m, torch.nn.GELU)]
    assert count_activations(net) == {"GELU": SLOTS["unet"]}
    assert {m.approximate for m in gelus} == {"tanh"}


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus"])
def test_segmentation_forward_and_backward(built, name):
    net = built[0][name, "smu"]
    net.train()
    net.zero_grad()
    images = torch.randn(2, 3, 64, 64)
    logits = net(images)
    assert logits.shape == (2, NUM_CLASSES["segmentation"], 64, 64)
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, 64, 64)))
    loss.backward()
    assert torch.isfinite(loss)
    mus = [m.mu for m in net.modules() if isinstance(m, actplug.get("smu"))]
    assert all(mu.grad is not None and torch.isfinite(mu.grad) for mu in mus)
    net.eval()
    with torch.no_grad():
        assert net(images[:1]).shape == (1, NUM_CLASSES["segmentation"], 64, 64)


def _targets(batch: int, size: int) -> list[dict[str, torch.Tensor]]:
    box = torch.tensor([[0.1, 0.2, 0.6, 0.7]]) * size
    return [{"boxes": box.clone(), "labels": torch.tensor([1 + i % NUM_CLASSES["detection"]])} for i in range(batch)]


@pytest.mark.parametrize(("name", "size", "batch"), [("ssd300_vgg16bn", 268, 1), ("ssdlite320", 64, 2)])
def test_detection_training_gives_a_loss_dict(built, name, size, batch):
    net = built[0][name, "smu"]
    net.train()
    net.zero_grad()
    losses = net([torch.rand(3, size, size) for _ in range(batch)], _targets(batch, size))
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    if name == "ssdlite320":  # cheap enough to also check that gradients reach every activation
        sum(losses.values()).backward()
        mus = [m.mu for m in net.modules() if isinstance(m, actplug.get("smu"))]
        assert all(mu.grad is not None for mu in mus)


@pytest.mark.parametrize(("name", "size", "batch"), [("ssd300_vgg16bn", 268, 1), ("ssdlite320", 64, 2)])
def test_detection_eval_gives_boxes_scores_labels(built, name, size, batch):
    net = built[0][name, "smu"]
    net.eval()
    with torch.no_grad():  # images of another size are resized by the model's transform
        out = net([torch.rand(3, size + 10, size - 10) for _ in range(batch)])
    assert len(out) == batch
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == (n,) and det["labels"].shape == (n,)
        if n:
            assert int(det["labels"].min()) >= 1
            assert int(det["labels"].max()) <= NUM_CLASSES["detection"]


def test_the_detection_transform_uses_the_image_size(built):
    nets, _ = built
    assert nets["ssdlite320", "smu"].transform.fixed_size == (64, 64)
    assert nets["ssd300_vgg16bn", "smu"].transform.fixed_size == (268, 268)
    # anchors tied to 300 only at 300; elsewhere they follow the feature-map grid
    assert nets["ssd300_vgg16bn", "smu"].anchor_generator.steps is None


def test_268_is_the_smallest_size_ssd300_vgg16bn_takes(built):
    """The built backbone, run for shapes only on the meta device: 268 gives a 1 x 1 conv11_2, 267 fails."""
    backbone = copy.deepcopy(built[0]["ssd300_vgg16bn", "smu"].backbone).to("meta").eval()
    shapes = [tuple(f.shape[1:]) for f in backbone(torch.zeros(1, 3, 268, 268, device="meta")).values()]
    assert shapes == [(512, 34, 34), (1024, 17, 17), (512, 9, 9), (256, 5, 5), (256, 3, 3), (256, 1, 1)]
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        backbone(torch.zeros(1, 3, 267, 267, device="meta"))
    models.check_model_options("detection", "ssd300_vgg16bn", "resnet34", "relu", None, 268)
    with pytest.raises(FinetuneError, match="at least 268"):
        models.check_model_options("detection", "ssd300_vgg16bn", "resnet34", "relu", None, 267)


def test_deeplabv3plus_needs_two_images_per_training_batch(built):
    net = built[0]["deeplabv3plus", "smu"].train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        net(torch.randn(1, 3, 64, 64))
    assert models.min_train_batch_size("segmentation", "deeplabv3plus", image_size=64) == 2
    assert models.min_train_batch_size("segmentation", "unet", image_size=64) == 1
    assert models.min_train_batch_size("segmentation", "unet", image_size=32) == 2
    assert models.min_train_batch_size("detection", "ssdlite320", image_size=64) == 2
    assert models.min_train_batch_size("detection", "ssd300_vgg16bn", image_size=300) == 1


@pytest.mark.parametrize(
    ("task", "model", "encoder", "size"),
    [
        ("segmentation", "unet", "tu-resnet34", 300),  # smp's U-Net takes any size; smp's own prefix is accepted
        ("segmentation", "deeplabv3plus", "resnet18.a1_in1k", 96),  # a timm pretrained tag (not downloaded)
        ("segmentation", "unet", "efficientnet_b0", 64),
        ("detection", "ssdlite320", "ignored-for-detection", 320),
        ("detection", "ssd300_vgg16bn", "resnet34", 300),
    ],
)
def test_valid_options_pass(task, model, encoder, size):
    models.check_model_options(task, model, encoder, "smu", SMU_KWARGS, size)


BAD_OPTIONS = [
    # (task, model, encoder, act, act_kwargs, image_size), words the message must contain
    (("classification", "unet", "resnet34", "smu", None, 64), ["classification", "segmentation, detection"]),
    (("segmentation", "unte", "resnet34", "smu", None, 64), ["'unte'", "Did you mean 'unet'", "unet, deeplabv3plus"]),
    (("segmentation", "ssdlite320", "resnet34", "smu", None, 64), ["is a detection model", "unet, deeplabv3plus"]),
    (("detection", "ssd300_vgg16", "resnet34", "smu", None, 300), ["Did you mean 'ssd300_vgg16bn'", "ssdlite320"]),
    (("segmentation", "unet", "resnt34", "smu", None, 64), ["'resnt34' is not a timm model", "'resnet34'"]),
    (("segmentation", "unet", "", "smu", None, 64), ["--encoder", "resnet34"]),
    (("segmentation", "unet", "dla34", "smu", None, 64), ["dla34", "no act_layer", "resnet34"]),
    (("segmentation", "deeplabv3plus", "densenet121", "smu", None, 64), ["output stride 16", "--model unet"]),
    (("segmentation", "unet", "vit_small_patch16_224", "smu", None, 64), ["vit_small_patch16_224", "resnet34"]),
    (("segmentation", "unet", "resnet34", "smuu", None, 64), ["'smuu'", "Did you mean", "'smu'"]),
    (("detection", "ssdlite320", "resnet34", "rleu", None, 64), ["'rleu'", "'relu'"]),
    (("segmentation", "unet", "resnet34", "smu", {"muu": 1.0}, 64), ["'muu'", "did you mean", "'mu'", "alpha, mu"]),
    (("segmentation", "unet", "resnet34", "gelu", {"negative_slope": 0.1}, 64), ["GELU", "approximate"]),
    (("segmentation", "unet", "resnet34", "smu", {"mu": "big"}, 64), ["--act-kwargs", "'big'"]),
    (("segmentation", "unet", "resnet34", "smu", [2.5], 64), ["--act-kwargs", "JSON object"]),
    (("segmentation", "unet", "resnet34", 3, None, 64), ["--act", "actplug list"]),
    (("segmentation", "unet", "resnet34", "smu", None, 0), ["--image-size", "positive whole number"]),
    (("segmentation", "unet", "resnet34", "smu", None, 64.5), ["--image-size", "64.5"]),
    (("segmentation", "unet", "resnet34", "smu", None, True), ["--image-size", "True"]),
    (("segmentation", "unet", "resnet34", "smu", None, 16), ["too small for unet", "at least 32"]),
    (("segmentation", "deeplabv3plus", "resnet34", "smu", None, 100), ["multiple of 16", "96 or 112"]),
    (("detection", "ssdlite320", "resnet34", "smu", None, 16), ["too small for ssdlite320", "at least 32"]),
    (("detection", "ssd300_vgg16bn", "resnet34", "smu", None, 256), ["at least 268", "300"]),
]


@pytest.mark.parametrize(("options", "words"), BAD_OPTIONS, ids=[str(o[:6]) for o, _ in BAD_OPTIONS])
def test_bad_options_raise_a_helpful_finetune_error(options, words):
    with pytest.raises(FinetuneError) as caught:
        models.check_model_options(*options)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("task", "num_classes"), [("segmentation", 1), ("detection", 0), ("detection", 2.0)])
def test_build_model_refuses_bad_num_classes(task, num_classes):
    name, size = ("unet", 64) if task == "segmentation" else ("ssdlite320", 64)
    with pytest.raises(FinetuneError, match="num_classes"):
        models.build_model(task, name, num_classes=num_classes, act="relu", image_size=size)


def test_build_model_checks_options_first():
    with pytest.raises(FinetuneError, match="Did you mean 'smu'"):
        models.build_model("detection", "ssdlite320", num_classes=3, act="smuu", image_size=64)


def test_meta_device_limits_are_told_apart_from_model_errors():
    """The meta-device probes skip only the meta device's own limits; a model's shape errors still fail."""
    from actplug.finetune.models_segmentation import is_meta_limitation

    assert is_meta_limitation(NotImplementedError("no meta kernel for aten::foo"))
    assert is_meta_limitation(RuntimeError("Tensor.item() cannot be called on meta tensors"))
    with torch.device("meta"):
        try:
            torch.empty(1).item()
        except Exception as exc:  # the real error the meta device raises
            assert is_meta_limitation(exc), exc
    assert not is_meta_limitation(RuntimeError("Kernel size can't be greater than actual input size"))
    assert not is_meta_limitation(ValueError("Expected more than 1 value per channel when training"))
    assert not is_meta_limitation(RuntimeError("metadata mismatch"))  # 'meta' only as a word of its own
