"""Issue 6 tasks of ``actplug compare``: wdbc, digits, shapes-seg, shapes-det and folder:PATH.

Each task runs end to end with tiny settings and returns the record format; runs are deterministic
and paired (same split, initial weights and batch order for every activation of a seed); the metrics
are checked on hand-made cases; bad input fails with CompareError before anything trains.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from actplug.baselines import activation_names
from actplug.compare.errors import CompareError
from actplug.compare.tasks import TASK_NAMES, CompareTask, detection, digits, folder, get_task, training, wdbc
from actplug.compare.tasks.classification import classification_metrics, evaluate_classifier

#: Tiny options of the image tasks: every run here takes about a second.
SEG_TINY = {"image_size": 32, "train_images": 4, "test_images": 2, "batch_size": 2}
DET_TINY = {"image_size": 64, "train_images": 4, "test_images": 2, "batch_size": 2}
FOLDER_TINY = {"image_size": 32, "batch_size": 4}


@pytest.fixture(scope="module", autouse=True)
def _eager_kernels():
    """The plain-math kernels: the compiled CPU path would spend seconds compiling for each new shape."""
    from actplug.kernels import settings

    with settings.use(cpu="eager"):
        yield


def check_record(record: dict, task: CompareTask, epochs: int) -> None:
    """The contract's record: every metric of the task, in [0, 1] (mAP may be -1), and one history row per epoch."""
    assert set(record) == {"metrics", "history"}
    assert set(record["metrics"]) == set(task.metrics)
    for name, value in record["metrics"].items():
        assert isinstance(value, float)
        assert 0.0 <= value <= 1.0 or (name.startswith("map") and value == -1.0), (name, value)
    assert [row["epoch"] for row in record["history"]] == list(range(1, epochs + 1))
    for row in record["history"]:
        assert set(row) == {"epoch", "train_loss", "test_loss", task.main_metric}
        assert math.isfinite(row["train_loss"]) and row["train_loss"] >= 0
        assert math.isfinite(row["test_loss"]) and row["test_loss"] >= 0
    assert record["history"][-1][task.main_metric] == record["metrics"][task.main_metric]


def write_images(directory, classes: dict[str, int], size: int = 12) -> None:
    """``count`` small PNGs per class, each class a colour of its own plus noise."""
    rng = np.random.default_rng(0)
    for c, (name, count) in enumerate(classes.items()):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = np.array([255 * (c % 2), 255 * (c // 2 % 2), 128], dtype=np.float64)
            base = np.broadcast_to(colour, (size, size, 3))
            pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(directory / name / f"{i}.png")


@pytest.fixture
def flat_folder(tmp_path):
    """PATH/<class>/*.png, no train/val: split 80/20 per seed."""
    write_images(tmp_path, {"cat": 6, "dog": 6})
    return tmp_path


@pytest.fixture
def split_folder(tmp_path):
    """PATH/train/<class>/*.png and PATH/val/<class>/*.png."""
    write_images(tmp_path / "train", {"a": 5, "b": 5, "c": 5})
    write_images(tmp_path / "val", {"a": 2, "b": 2, "c": 2})
    return tmp_path


# ---------------------------------------------------------------- get_task


def test_task_names_and_fields():
    assert TASK_NAMES == ("wdbc", "digits", "shapes-seg", "shapes-det", "folder:PATH")
    expected = {
        "wdbc": ("accuracy", ("accuracy", "precision", "recall", "f1")),
        "digits": ("accuracy", ("accuracy", "precision", "recall", "f1")),
        "shapes-seg": ("miou", ("miou", "pixel_acc")),
        "shapes-det": ("map", ("map", "map_50", "map_75")),
    }
    for name, (main, metrics) in expected.items():
        task = get_task(name)
        assert (task.name, task.main_metric, task.metrics) == (name, main, metrics)
        assert task.default_epochs >= 1 and callable(task.run)
        assert "\n" not in task.description and task.description
    assert get_task(" WDBC ").name == "wdbc"
    assert get_task("wdbc").default_epochs == 100  # srelu.txt's schedule


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("wdcb", "Did you mean 'wdbc'"),
        ("shapes_seg", "Did you mean 'shapes-seg'"),
        ("mnist", "choose one of wdbc, digits, shapes-seg, shapes-det, folder:PATH"),
        ("", "--task is empty"),
        ("wdbc:extra", "only folder:PATH has a path"),
        ("folder", "write folder:PATH"),
        ("folder:", "write folder:PATH"),
    ],
)
def test_bad_task_names(spec, needle):
    with pytest.raises(CompareError) as info:
        get_task(spec)
    assert needle.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    ("spec", "model", "needle"),
    [
        ("wdbc", "resnet18", "leave --model out"),
        ("digits", "mlp", "leave --model out"),
        ("wdbc", "  ", "--model is empty"),
        ("shapes-seg", "unett", "Did you mean 'unet'"),
        ("shapes-seg", "ssdlite320", "use --task shapes-det"),
        ("shapes-seg", "unet:", "empty encoder"),
        ("shapes-seg", "unet:resnet1888", "not a timm model"),
        ("shapes-det", "ssdlite", "Did you mean 'ssdlite320'"),
        ("shapes-det", "unet", "use --task shapes-seg"),
        ("shapes-det", "ssdlite320:resnet18", "take no ':ENCODER'"),
    ],
)
def test_bad_models(spec, model, needle):
    with pytest.raises(CompareError) as info:
        get_task(spec, model=model)
    assert needle.lower() in str(info.value).lower()


def test_model_choices_are_kept():
    assert "unet:resnet34" in get_task("shapes-seg", model="unet:resnet34").description
    assert "deeplabv3plus:resnet18" in get_task("shapes-seg", model="deeplabv3plus").description
    ssd = get_task("shapes-det", model="ssd300_vgg16bn")
    assert "300x300" in ssd.description and ssd.run.keywords["model"] == "ssd300_vgg16bn"
    assert detection.parse_model(None).image_size == 128


def test_bad_run_arguments():
    with pytest.raises(CompareError, match="Did you mean 'srelu'"):
        wdbc.run("sreluu", 0, 1)
    with pytest.raises(CompareError, match="epochs must be"):
        wdbc.run("relu", 0, 0)
    with pytest.raises(CompareError, match="seed must be"):
        wdbc.run("relu", -1, 1)
    with pytest.raises(CompareError, match="batch_size 1 is too small for ssdlite320"):
        get_task("shapes-det").run("relu", 0, 1, batch_size=1, image_size=64)
    with pytest.raises(CompareError, match="fewer than one batch"):
        get_task("shapes-seg").run("relu", 0, 1, train_images=2, batch_size=4, image_size=32)


# ---------------------------------------------------------------- metrics on known answers


def test_binary_metrics_by_hand():
    # TP = 2 (0, 2), FN = 1 (1), FP = 1 (3), TN = 1 (4)
    result = classification_metrics([1, 1, 1, 0, 0], [1, 0, 1, 1, 0], average="binary")
    assert result == pytest.approx({"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # no positive predicted: precision 0/0 counts as 0
    none = classification_metrics([1, 0, 0], [0, 0, 0], average="binary")
    assert none == pytest.approx({"accuracy": 2 / 3, "precision": 0.0, "recall": 0.0, "f1": 0.0})


def test_macro_metrics_by_hand():
    # class 0: P 1/1, R 1/2; class 1: P 1/2, R 1/1; class 2: P 1/1, R 1/1
    result = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], average="macro")
    precision, recall = (1 + 0.5 + 1) / 3, (0.5 + 1 + 1) / 3
    f1 = (2 * 0.5 / 1.5 + 2 * 0.5 / 1.5 + 1) / 3
    assert result == pytest.approx({"accuracy": 3 / 4, "precision": precision, "recall": recall, "f1": f1})


class FixedLogits(nn.Module):
    """A 'classifier' that returns the logits it was given, whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.long().flatten()]


def test_evaluate_classifier_with_controlled_predictions():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])  # predictions 0, 1, 1, 0: one right per class
    inputs = torch.arange(4).float()
    result = evaluate_classifier(
        FixedLogits(logits),
        [(inputs[:3], labels[:3]), (inputs[3:], labels[3:])],
        lambda z, y: nn.functional.cross_entropy(z, y, reduction="sum"),
        lambda z: z.argmax(1),
        torch.device("cpu"),
        average="macro",
    )
    assert result.metrics == pytest.approx({"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    right, wrong = -math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(1 / (math.exp(2) + 1))
    assert result.loss == pytest.approx((2 * right + 2 * wrong) / 4)


def test_wdbc_positive_class_is_malignant():
    from sklearn.datasets import load_breast_cancer

    assert wdbc.POSITIVE_CLASS == "malignant"
    raw = load_breast_cancer()
    _, labels = wdbc._dataset()
    assert labels.sum() == 212  # WDBC: 212 malignant, 357 benign tumours
    assert np.array_equal(labels == 1, raw.target_names[raw.target] == "malignant")
    split = wdbc.load_split(0)
    # A model saying "malignant" for everything finds every malignant tumour (recall 1) and its precision
    # is the malignant share of the test split: F1 and precision are those of the malignant class.
    always = torch.tensor([[5.0]]).expand(len(split.y_test), 1)
    preds = wdbc.OBJECTIVE.predict(always).numpy()
    share = float(split.y_test.float().mean())
    result = classification_metrics(split.y_test.numpy(), preds, average="binary")
    assert result["recall"] == 1.0 and result["precision"] == pytest.approx(share)


# ---------------------------------------------------------------- data


def test_wdbc_split_standardised_on_train_only():
    from sklearn.preprocessing import StandardScaler

    split = wdbc.load_split(3)
    assert split.x_train.shape == (455, 30) and split.x_test.shape == (114, 30)
    assert split.x_train.dtype == torch.float32
    assert torch.allclose(split.x_train.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(split.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4)
    features, labels = wdbc._dataset()
    train, test = training.stratified_split(labels, 3)
    expected = StandardScaler().fit(features[train]).transform(features[test])
    assert np.allclose(split.x_test.numpy(), expected, atol=1e-5)
    # stratified: both splits keep the malignant share of the whole set (212 / 569)
    for part in (split.y_train, split.y_test):
        assert float(part.float().mean()) == pytest.approx(212 / 569, abs=0.01)


def test_digits_scaled_to_unit_range():
    split = digits.load_split(0)
    assert split.x_train.shape == (1437, 1, 8, 8) and split.x_test.shape == (360, 1, 8, 8)
    assert float(split.x_train.min()) == 0.0 and float(split.x_train.max()) == 1.0
    assert sorted(torch.unique(split.y_test).tolist()) == list(range(10))


@pytest.mark.parametrize("module", [wdbc, digits])
def test_split_depends_on_seed_only(module):
    a, b, other = module.load_split(0), module.load_split(0), module.load_split(1)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, other.x_test)


def test_batch_order_depends_on_seed_only():
    dataset = torch.utils.data.TensorDataset(torch.arange(50))

    def order(seed: int, disturb: bool) -> list[list[int]]:
        loader = training.seeded_loader(dataset, 8, seed)
        epochs = []
        for _ in range(2):
            if disturb:
                torch.rand(100)  # what dropout or LPFLU would draw from the global RNG
            epochs.append([int(x) for (batch,) in loader for x in batch])
        return epochs

    first = order(0, disturb=False)
    assert first == order(0, disturb=True)
    assert first[0] != first[1]  # a new order each epoch ...
    assert first != order(1, disturb=False)  # ... and per seed


# ---------------------------------------------------------------- pairing


def test_no_activation_consumes_the_global_rng():
    for name in activation_names():
        assert not training.consumes_rng(name), name
        training.require_rng_neutral(name)


def test_same_seed_same_initial_weights_for_every_activation():
    reference = training.non_activation_state(wdbc.build_model("relu", 0))
    for name in activation_names():
        state = training.non_activation_state(wdbc.build_model(name, 0))
        assert state.keys() == reference.keys(), name
        assert all(torch.equal(state[k], reference[k]) for k in reference), name
    other = training.non_activation_state(wdbc.build_model("relu", 1))
    assert not torch.equal(other["0.weight"], reference["0.weight"])


def test_initial_weights_paired_in_image_models(flat_folder):
    layout = folder.inspect_folder(flat_folder)
    shapes_choice = get_task("shapes-seg").run.keywords["model"]
    from actplug.compare.tasks import segmentation, shapes

    builders = {
        "digits": lambda act, seed: digits.build_model(act, seed),
        "folder": lambda act, seed: folder.build_model("resnet18", act, seed, len(layout.classes)),
        "shapes-seg": lambda act, seed: shapes.build_model(segmentation.parse_model(shapes_choice), act, seed, 4, 32),
    }
    for task, build in builders.items():
        relu, smu, other = (
            training.non_activation_state(build(a, s)) for a, s in (("relu", 0), ("smu", 0), ("relu", 1))
        )
        assert relu.keys() == smu.keys(), task
        assert all(torch.equal(relu[k], smu[k]) for k in relu), task
        assert any(not torch.equal(relu[k], other[k]) for k in relu), task


def test_rng_drawing_activation_is_isolated_or_refused(monkeypatch):
    """An activation that draws random numbers when built (a plugin's, say) must not unpair the runs."""
    reference = training.non_activation_state(wdbc.build_model("relu", 0))

    def drawing(name, **kwargs):
        torch.rand(10)
        return nn.ReLU()

    import actplug.baselines

    monkeypatch.setattr(actplug.baselines, "make_activation", drawing)  # what every activation_layer builds with
    monkeypatch.setattr(training, "make_activation", drawing)
    state = training.non_activation_state(wdbc.build_model("relu", 0))
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    with pytest.raises(CompareError, match="unpaired"):
        training.require_rng_neutral("relu")


# ---------------------------------------------------------------- end to end


def test_wdbc_end_to_end_and_deterministic():
    task = get_task("wdbc")
    first = task.run("srelu", 0, 2, torch.device("cpu"))
    check_record(first, task, 2)
    assert task.run("srelu", 0, 2, torch.device("cpu")) == first
    assert task.run("srelu", 1, 2, torch.device("cpu")) != first


def test_wdbc_learns():
    """A correctness check of the pipeline: WDBC is easy, ReLU passes 90% test accuracy in 30 epochs."""
    record = get_task("wdbc").run("relu", 0, 30, "cpu")
    assert record["metrics"]["accuracy"] > 0.9
    assert record["history"][-1]["train_loss"] < record["history"][0]["train_loss"]


def test_digits_end_to_end_and_deterministic():
    task = get_task("digits")
    first = task.run("smu", 0, 1, "cpu")
    check_record(first, task, 1)
    assert task.run("smu", 0, 1, "cpu") == first


def test_shapes_seg_end_to_end_and_deterministic():
    task = get_task("shapes-seg")
    first = task.run("smu", 0, 2, "cpu", **SEG_TINY)
    check_record(first, task, 2)
    assert task.run("smu", 0, 2, "cpu", **SEG_TINY) == first


def test_shapes_det_end_to_end():
    task = get_task("shapes-det")
    record = task.run("gelu", 0, 1, "cpu", **DET_TINY)
    check_record(record, task, 1)


def test_detection_test_loss_leaves_batchnorm_alone():
    from actplug.compare.tasks import shapes
    from actplug.finetune import data
    from actplug.finetune.metrics import DetectionMetrics

    choice = detection.parse_model(None)
    datasets = shapes.build_data("detection", 0, 64, 2, 2)
    net = shapes.build_model(choice, "relu", 0, datasets.num_classes, 64).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loader = training.ordered_loader(datasets.val, 2, collate_fn=data.collate_detection)
    rng = torch.random.get_rng_state()
    result = detection._evaluate(net, loader, DetectionMetrics(), torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # running stats untouched
    assert torch.equal(rng, torch.random.get_rng_state())  # evaluation draws nothing from the global RNG
    assert math.isfinite(result.loss) and result.loss > 0
    with torch.no_grad(), detection.loss_mode(net):
        assert set(net(*detection._on(torch.device("cpu"), next(iter(loader))))) == {
            "bbox_regression",
            "classification",
        }
    assert not net.training  # evaluation leaves the model in eval mode; loss_mode restores what it found


def test_folder_with_train_val(split_folder):
    task = get_task(f"folder:{split_folder}")
    assert task.name == "folder" and task.metrics == ("accuracy", "precision", "recall", "f1")
    assert "3 classes, 15 train / 6 test images" in task.description
    record = task.run("relu", 0, 2, "cpu", **FOLDER_TINY)
    check_record(record, task, 2)
    train, test = folder.load_split(task.run.keywords["layout"], 0, 32)
    assert len(train) == 15 and len(test) == 6 and train.tensors[0].dtype == torch.uint8


def test_folder_flat_seeded_split(flat_folder):
    task = get_task(f"folder:{flat_folder}", model="resnet18")
    assert "stratified 80/20" in task.description
    layout = task.run.keywords["layout"]
    (_, y_train), (x_test, y_test) = (d.tensors for d in folder.load_split(layout, 0, 16))
    assert len(y_train) == 9 and len(y_test) == 3 and set(y_test.tolist()) == {0, 1}
    assert torch.equal(x_test, folder.load_split(layout, 0, 16)[1].tensors[0])
    assert any(not torch.equal(x_test, folder.load_split(layout, s, 16)[1].tensors[0]) for s in (1, 2, 3))
    first = task.run("ash", 0, 1, "cpu", **FOLDER_TINY)
    check_record(first, task, 1)
    assert task.run("ash", 0, 1, "cpu", **FOLDER_TINY) == first


# ---------------------------------------------------------------- folder checks


def test_folder_problems(tmp_path):
    def fails(path, needle, model=None):
        with pytest.raises(CompareError) as info:
            get_task(f"folder:{path}", model=model)
        assert needle in str(info.value), str(info.value)
        return str(info.value)

    message = fails(tmp_path / "missing", "does not exist")
    assert str(tmp_path / "missing") in message
    (tmp_path / "file.txt").write_text("x")
    fails(tmp_path / "file.txt", "is a file, not a folder")

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(empty, "has no class sub-folders")

    one = tmp_path / "one"
    write_images(one, {"only": 3})
    fails(one, "only one class sub-folder ('only')")

    hollow = tmp_path / "hollow"
    write_images(hollow, {"a": 5, "b": 5})
    (hollow / "c").mkdir()
    (hollow / "c" / "notes.txt").write_text("not an image")
    message = fails(hollow, "has no images")
    assert str(hollow / "c") in message

    broken = tmp_path / "broken"
    write_images(broken, {"a": 5, "b": 5})
    (broken / "b" / "bad.jpg").write_bytes(b"not a jpeg at all")
    message = fails(broken, "cannot be read by PIL")
    assert "bad.jpg" in message and "replace or delete" in message

    lonely = tmp_path / "lonely"
    write_images(lonely / "train", {"a": 3, "b": 3})
    fails(lonely, "has train/ but no val/")

    mismatch = tmp_path / "mismatch"
    write_images(mismatch / "train", {"a": 3, "b": 3, "c": 3})
    write_images(mismatch / "val", {"a": 1, "b": 1})
    fails(mismatch, "only in train/: c")

    few = tmp_path / "few"
    write_images(few, {"a": 1, "b": 4})
    fails(few, "fewer than 2 images")

    good = tmp_path / "good"
    write_images(good, {"a": 5, "b": 5})
    fails(good, "Did you mean 'resnet18'", model="resnet1")
    fails(good, "cannot take 64x64 images", model="vit_tiny_patch16_224")
