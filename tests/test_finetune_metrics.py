"""Issue 5 metrics on hand-made predictions with answers worked out by hand, and across two processes.

Segmentation: torchmetrics' macro Jaccard index (mIoU over the whole set's confusion matrix) and
micro accuracy (correct / valid pixels). Detection: torchmetrics' COCO mAP (pycocotools), whose
101-point interpolation gives AP = 51/101 when precision is 1 up to recall 0.5 and nothing after.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from actplug.finetune.metrics import DetectionMetrics, SegmentationMetrics

# ---------------------------------------------------------------- segmentation
# A 4 x 4 image, classes 0, 1, 2; 255 is ignored. Differences: (1,1) true 1 predicted 0, (3,0) true 0
# predicted 2, and (2,3) is ignored (predicted 2). Over the 15 valid pixels:
#   class 0: TP 3, FP 1 (1,1), FN 1 (3,0) -> IoU 3/5
#   class 1: TP 4, FP 0, FN 1 (1,1)       -> IoU 4/5
#   class 2: TP 6, FP 1 (3,0), FN 0       -> IoU 6/7 (the ignored pixel predicted 2 is no FP)
#   pixel accuracy 13/15
PRED = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
TRUE = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 255], [0, 2, 2, 2]])
CLASS_IOU = [3 / 5, 4 / 5, 6 / 7]


def test_perfect_segmentation_scores_one():
    metrics = SegmentationMetrics(3)
    metrics.update(TRUE.clamp(max=2)[None].repeat(2, 1, 1), TRUE.clamp(max=2)[None].repeat(2, 1, 1))
    assert metrics.compute() == {"miou": 1.0, "pixel_acc": 1.0, "samples": 2}


def test_a_known_confusion_gives_the_iou_of_each_class_and_their_mean():
    metrics = SegmentationMetrics(3)
    metrics.update(PRED[None], TRUE[None])
    result = metrics.compute()
    assert metrics.per_class_iou() == pytest.approx(CLASS_IOU)
    assert result["miou"] == pytest.approx(sum(CLASS_IOU) / 3)
    assert result["pixel_acc"] == pytest.approx(13 / 15)
    assert result["samples"] == 1


def test_logits_and_class_ids_give_the_same_result():
    logits = torch.nn.functional.one_hot(PRED, 3).permute(2, 0, 1).float()[None] * 5 - 1
    by_logits, by_ids = SegmentationMetrics(3), SegmentationMetrics(3)
    by_logits.update(logits, TRUE[None])
    by_ids.update(PRED[None], TRUE[None])
    assert by_logits.compute() == by_ids.compute()


def test_ignored_pixels_count_nowhere():
    metrics = SegmentationMetrics(3, ignore_index=255)
    other = PRED.clone()
    other[2, 3] = 0  # the ignored pixel, predicted otherwise: nothing changes
    metrics.update(other[None], TRUE[None])
    everything_ignored = torch.full((1, 4, 4), 255)
    metrics.update(torch.zeros(1, 4, 4, dtype=torch.long), everything_ignored)  # adds no pixel, one image
    result = metrics.compute()
    assert metrics.per_class_iou() == pytest.approx(CLASS_IOU)
    assert result["pixel_acc"] == pytest.approx(13 / 15)
    assert result["samples"] == 2


def test_a_class_absent_from_predictions_and_targets_is_left_out_of_the_mean():
    metrics = SegmentationMetrics(5)  # classes 3 and 4 appear nowhere
    metrics.update(PRED[None], TRUE[None])
    per_class = metrics.per_class_iou()
    assert per_class[:3] == pytest.approx(CLASS_IOU)
    assert math.isnan(per_class[3]) and math.isnan(per_class[4])
    assert metrics.compute()["miou"] == pytest.approx(sum(CLASS_IOU) / 3)


def test_a_class_in_the_targets_but_never_predicted_counts_as_zero():
    metrics = SegmentationMetrics(4)
    target = TRUE.clone()
    target[0, 0] = 3  # class 3 is present but predicted 0: IoU 0; class 0 loses a TP and gains an FP
    metrics.update(PRED[None], target[None])
    assert metrics.per_class_iou() == pytest.approx([2 / 5, 4 / 5, 6 / 7, 0.0])
    assert metrics.compute()["miou"] == pytest.approx((2 / 5 + 4 / 5 + 6 / 7 + 0) / 4)


def test_batches_accumulate_into_one_confusion_matrix_and_reset_clears_it():
    metrics = SegmentationMetrics(3)
    metrics.update(PRED[None], TRUE[None])
    metrics.update(TRUE.clamp(max=2)[None], TRUE.clamp(max=2)[None])  # a perfect second image
    together = SegmentationMetrics(3)
    together.update(torch.stack([PRED, TRUE.clamp(max=2)]), torch.stack([TRUE, TRUE.clamp(max=2)]))
    assert metrics.compute() == together.compute()
    assert metrics.compute()["samples"] == 2
    metrics.reset()
    metrics.update(PRED[None], TRUE[None])
    assert metrics.compute()["samples"] == 1
    assert metrics.compute()["pixel_acc"] == pytest.approx(13 / 15)


@pytest.mark.parametrize(
    ("output", "target", "words"),
    [
        (torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "4 channels"),
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long), "does not match"),
        (torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.long), "expected logits"),
    ],
)
def test_segmentation_inputs_of_the_wrong_shape_are_refused(output, target, words):
    with pytest.raises(ValueError, match=words):
        SegmentationMetrics(3).update(output, target)


# ------------------------------------------------------------------- detection
def _box(*xyxy: float) -> torch.Tensor:
    return torch.tensor([list(map(float, xyxy))])


def _pred(boxes: torch.Tensor, scores: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": boxes, "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def _truth(boxes: torch.Tensor, labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": boxes, "labels": torch.tensor(labels)}


def test_perfect_detections_score_one():
    metrics = DetectionMetrics()
    boxes = torch.tensor([[10.0, 10, 50, 60], [60, 20, 90, 90]])
    metrics.update([_pred(boxes, [0.9, 0.8], [1, 2])], [_truth(boxes, [1, 2])])
    metrics.update([_pred(_box(5, 5, 40, 40), [0.7], [3])], [_truth(_box(5, 5, 40, 40), [3])])
    assert metrics.compute() == {"map": 1.0, "map_50": 1.0, "map_75": 1.0, "samples": 2}


def test_a_detection_with_iou_06_counts_at_050_but_not_at_075():
    # ground truth 100 x 100, detection 100 x 60 inside it: IoU = 6000 / 10000 = 0.6
    metrics = DetectionMetrics()
    metrics.update([_pred(_box(0, 0, 100, 60), [0.9], [1])], [_truth(_box(0, 0, 100, 100), [1])])
    result = metrics.compute()
    assert result["map_50"] == 1.0
    assert result["map_75"] == 0.0


def test_map_averages_the_ten_iou_thresholds():
    # IoU 0.62 matches at the thresholds 0.50, 0.55 and 0.60 only: AP 1, 1, 1 and seven 0 -> 0.3
    metrics = DetectionMetrics()
    metrics.update([_pred(_box(0, 0, 100, 62), [0.9], [1])], [_truth(_box(0, 0, 100, 100), [1])])
    assert metrics.compute()["map"] == pytest.approx(0.3)


def test_a_missed_object_halves_recall():
    metrics = DetectionMetrics()
    truths = torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]])
    metrics.update([_pred(_box(0, 0, 10, 10), [0.9], [1])], [_truth(truths, [1, 1])])
    result = metrics.compute()
    assert metrics.mean_ap.compute()["mar_100"] == pytest.approx(0.5)
    # precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points
    assert result["map_50"] == pytest.approx(51 / 101)
    assert result["map"] == pytest.approx(51 / 101)


def test_difficult_objects_are_neither_hits_nor_misses():
    """VOC's difficult objects arrive as iscrowd=1: missing one costs nothing (without the flag it halves recall)."""
    truths = torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]])
    metrics = DetectionMetrics()
    target = _truth(truths, [1, 1]) | {"iscrowd": torch.tensor([0, 1])}
    metrics.update([_pred(_box(0, 0, 10, 10), [0.9], [1])], [target])
    assert metrics.compute()["map_50"] == 1.0


def test_samples_count_images_with_and_without_objects():
    metrics = DetectionMetrics()
    empty_pred = _pred(torch.zeros(0, 4), [], [])
    metrics.update(
        [_pred(_box(0, 0, 10, 10), [0.9], [1]), empty_pred],
        [_truth(_box(0, 0, 10, 10), [1]), _truth(torch.zeros(0, 4), [])],
    )
    metrics.update([empty_pred], [_truth(torch.zeros(0, 4), [])])
    result = metrics.compute()
    assert result["samples"] == 3
    assert result["map"] == 1.0
    metrics.reset()
    metrics.update([empty_pred], [_truth(_box(0, 0, 10, 10), [1])])
    assert metrics.compute() == {"map": 0.0, "map_50": 0.0, "map_75": 0.0, "samples": 1}


def test_mismatched_prediction_and_target_lists_are_refused():
    with pytest.raises(ValueError, match="one of each per image"):
        DetectionMetrics().update([], [_truth(_box(0, 0, 1, 1), [1])])


# ------------------------------------------------------- two processes vs one
N_IMAGES = 5  # odd on purpose: rank 0 gets 3 images, rank 1 gets 2, as a disjoint split without padding


def _segmentation_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (N_IMAGES, 8, 8), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    logits = torch.randn(N_IMAGES, 4, 8, 8, generator=g)
    logits += 2.0 * torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2)
    return logits, target


def _detection_data() -> tuple[list[dict], list[dict]]:
    g = torch.Generator().manual_seed(2)
    preds, truths = [], []
    for _ in range(N_IMAGES):
        n = int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 60
        wh = 10 + torch.rand(n, 2, generator=g) * 30
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(1, 4, (n,), generator=g)
        found = boxes + torch.randn(n, 4, generator=g) * 3  # jittered detections
        extra = torch.cat([xy[:1] + 5, xy[:1] + 25], dim=1)  # and one false positive
        preds.append(
            {
                "boxes": torch.cat([found, extra]),
                "scores": torch.rand(n + 1, generator=g),
                "labels": torch.cat([labels, torch.randint(1, 4, (1,), generator=g)]),
            }
        )
        truths.append({"boxes": boxes, "labels": labels})
    return preds, truths


def _evaluate(indices: list[int]) -> dict:
    logits, target = _segmentation_data()
    preds, truths = _detection_data()
    seg, det = SegmentationMetrics(4), DetectionMetrics()
    for i in indices:  # one image per update, as a loader with batch size 1 would
        seg.update(logits[i : i + 1], target[i : i + 1])
        det.update([preds[i]], [truths[i]])
    return {"segmentation": seg.compute(), "class_iou": seg.per_class_iou(), "detection": det.compute()}


def _rank_worker(index: int, first_rank: int, world: int, init_file: str, out_dir: str) -> None:
    """Rank ``first_rank + index`` of a gloo group: evaluates its disjoint share, writes what it computed."""
    rank = first_rank + index
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        result = _evaluate(list(range(rank, N_IMAGES, world)))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_processes_count_every_image_once_and_agree_with_one(tmp_path):
    """World size 2: rank 1 in a process started by torch.multiprocessing.spawn, rank 0 in this one
    (which has torchmetrics imported already; a second spawned interpreter would spend seconds importing it)."""
    single = _evaluate(list(range(N_IMAGES)))
    args = (2, str(tmp_path / "rendezvous"), str(tmp_path))
    other = mp.spawn(_rank_worker, args=(1, *args), nprocs=1, join=False)
    try:
        _rank_worker(0, 0, *args)
    finally:
        other.join()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert single["segmentation"]["samples"] == single["detection"]["samples"] == N_IMAGES
    assert 0.0 < single["detection"]["map"] < 1.0 and 0.0 < single["segmentation"]["miou"] < 1.0
    for result in ranks:
        assert result["segmentation"]["samples"] == result["detection"]["samples"] == N_IMAGES
        for key, value in single["segmentation"].items():
            assert result["segmentation"][key] == pytest.approx(value, abs=1e-6)
        assert result["class_iou"] == pytest.approx(single["class_iou"], abs=1e-6)
        for key, value in single["detection"].items():
            assert result["detection"][key] == pytest.approx(value, abs=1e-6)
