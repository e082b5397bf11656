"""torchvision SSD detectors with the chosen activation: SSD300 on VGG16-BN (smu.txt) and SSDLite320.

Built from torchvision's own parts, never hand-written, and without weights (``weights=None``,
``weights_backbone=None``) unless ``pretrained`` gives the backbone's: then the model keeps
torchvision's own activations, the weights are loaded (:func:`.pretrained.load_weights`), and the
caller swaps. ``num_classes`` counts foreground classes; torchvision gets one more for
the background (label 0). Images are resized to ``image_size`` x ``image_size`` by the model's own
transform. Every activation module becomes the chosen one; kept on purpose are the hard-sigmoid gates of
MobileNetV3's squeeze-excitation blocks (gates, not feature activations) and SSD300's L2 normalisation
of conv4_3 (a rescaling, not an activation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .errors import FinetuneError
from .models_act import activation_layer, swap_remaining
from .pretrained import Pretrained, load_weights
from .state_dicts import WHOLE_MODEL, Target

#: Smallest image size each detector takes. SSD300's conv10_2 and conv11_2 are unpadded 3 x 3
#: convolutions: below 268 pixels conv9_2's map is smaller than 5 x 5 and conv11_2 gets less than
#: 3 x 3 ("Kernel size can't be greater than actual input size"). SSDLite's convolutions are all padded,
#: so it runs at any size; 32 (its backbone's deepest stride) is our floor, below which every one of its
#: six feature maps is a single cell.
MIN_SIZE = {"ssd300_vgg16bn": 268, "ssdlite320": 32}

#: Output channels of SSD300's six feature maps (conv4_3, fc7, conv8_2 ... conv11_2), as
#: ``torchvision.models.detection._utils.retrieve_out_channels`` finds them; given to ``SSDHead``
#: directly so that building needs no dummy forward pass.
VGG_SSD_OUT_CHANNELS = [512, 1024, 512, 256, 256, 256]

#: torchvision's VGG16-BN was trained on inputs normalised with ImageNet's mean and std (the plain
#: VGG16 of ``ssd300_vgg16`` uses Caffe-style 0-255 inputs instead, hence its different constants).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def check_detection_size(model: str, image_size: int) -> None:
    """FinetuneError when ``model`` cannot take ``image_size`` x ``image_size`` images."""
    least = MIN_SIZE[model]
    if image_size < least:
        raise FinetuneError(
            f"--image-size {image_size} is too small for {model}: it needs at least {least} pixels "
            f"(its smallest feature maps would vanish); use --image-size {300 if model == 'ssd300_vgg16bn' else 320} "
            f"(the size it was designed for) or any size from {least} up"
        )


def build_ssd300_vgg16bn(
    num_classes: int,
    image_size: int,
    act: str,
    act_kwargs: Mapping[str, Any],
    pretrained: Pretrained | None = None,
) -> nn.Module:
    """SSD300 on VGG16-BN: torchvision's ``ssd300_vgg16`` builder with the BN variant of VGG16.

    The feature extractor cuts VGG16-BN at its max-pool layers, so the BatchNorm layers come along
    (conv4_3 + BN + ReLU end the first feature map, conv5_3 + BN + ReLU feed fc6). At 300 pixels the
    anchors use torchvision's steps (8, 16, ..., 300, tied to 300); at any other size the steps are
    left out, so anchor centres follow each feature map's own grid. ``pretrained``: weights of
    VGG16-BN (``features.*`` as torchvision's ``vgg16_bn`` names them) or of this whole SSD, loaded
    with the ReLUs in place and nothing swapped.
    """
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDFeatureExtractorVGG, SSDHead
    from torchvision.models.vgg import cfgs, make_layers

    # VGG16-BN's convolutional part only: torchvision's vgg16_bn() would also build (and drop) its
    # 120M-parameter classifier. Same layers, initialised as torchvision's VGG initialises them.
    features = make_layers(cfgs["D"], batch_norm=True)
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    backbone = SSDFeatureExtractorVGG(features, highres=False)
    anchors = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300] if image_size == 300 else None,
    )
    head = SSDHead(VGG_SSD_OUT_CHANNELS, anchors.num_anchors_per_location(), num_classes + 1)
    model = SSD(
        backbone,
        anchors,
        (image_size, image_size),
        num_classes + 1,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        head=head,
    )
    if pretrained is not None:
        # The extractor holds the very modules of ``features``, so loading into either reaches the SSD.
        load_weights(
            pretrained,
            [Target(WHOLE_MODEL, model), Target("the VGG16-BN backbone", features, ("features.", "", "backbone."))],
        )
        return model
    return swap_remaining(model, act, act_kwargs)


def build_ssdlite320(
    num_classes: int,
    image_size: int,
    act: str,
    act_kwargs: Mapping[str, Any],
    pretrained: Pretrained | None = None,
) -> nn.Module:
    """torchvision's ``ssdlite320_mobilenet_v3_large`` without weights, resized to ``image_size``.

    actplug's torchvision adapter gives the builder ``act_layer=``; the builder fixes its size at 320,
    so the transform is set to ``image_size`` afterwards (its anchors follow the feature-map grids, so
    they fit any size). ``pretrained``: see :func:`_ssdlite320_pretrained`.
    """
    if pretrained is not None:
        model = _ssdlite320_pretrained(num_classes, pretrained)
    else:
        from torchvision.models import detection

        builder = detection.ssdlite320_mobilenet_v3_large
        wrapped = getattr(builder, "_actplug_wrapped", False)
        extra = {"act_layer": activation_layer(act, act_kwargs)} if wrapped else {}
        model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1, **extra)
    model.transform.min_size = (image_size,)
    model.transform.max_size = image_size
    model.transform.fixed_size = (image_size, image_size)
    return model if pretrained is not None else swap_remaining(model, act, act_kwargs)


def _ssdlite320_pretrained(num_classes: int, pretrained: Pretrained) -> nn.Module:
    """SSDLite320 as torchvision's builder makes it with a pretrained backbone, the weights from ``pretrained``.

    The builder's body with ``weights_backbone`` given (torchvision's own parts, in its order): the
    MobileNetV3-Large backbone keeps its full tail (the reduced tail of a from-scratch SSDLite has
    other shapes than ImageNet weights), its own activations, and BatchNorm with eps 0.001, momentum
    0.03. The builder itself cannot take a local file, hence this copy of its few lines.
    """
    from functools import partial

    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    mobilenet = mobilenet_v3_large(weights=None, norm_layer=norm_layer, reduced_tail=False)
    backbone = _mobilenet_extractor(mobilenet, 6, norm_layer)  # 6 of 6 stages trainable, as the builder's default
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, (320, 320))
    head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), num_classes + 1, norm_layer)
    model = SSD(
        backbone,
        anchors,
        (320, 320),
        num_classes + 1,
        head=head,
        score_thresh=0.001,
        nms_thresh=0.55,
        detections_per_img=300,
        topk_candidates=300,
        image_mean=[0.5, 0.5, 0.5],  # inputs rescaled from [0, 1] to [-1, 1], as the builder does
        image_std=[0.5, 0.5, 0.5],
    )
    # The extractor holds the very modules of ``mobilenet.features``: loading into either reaches the SSD.
    load_weights(
        pretrained, [Target(WHOLE_MODEL, model), Target("the MobileNetV3-Large backbone", mobilenet, ("", "backbone."))]
    )
    return model


BUILDERS = {"ssd300_vgg16bn": build_ssd300_vgg16bn, "ssdlite320": build_ssdlite320}

#: Smallest training batch (BatchNorm needs more than one value per channel): SSDLite's last extra
#: block and its head's BatchNorm always see a 1 x 1 map; SSD300's BatchNorm layers all sit in VGG16
#: (conv5_3's map is at least 17 x 17), its extra blocks and head have none.
MIN_TRAIN_BATCH = {"ssd300_vgg16bn": 1, "ssdlite320": 2}
