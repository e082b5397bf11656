"""``--pretrained SOURCE``: which weights a recipe model starts from, resolved offline before anything is built.

SOURCE is a local file or a name the model's framework knows:

- a file: ``.safetensors`` (read with safetensors) or ``.pth`` / ``.pt`` (a state dict, read with
  ``torch.load(weights_only=True)``), of the backbone / encoder or of the whole recipe model (see
  :mod:`.state_dicts` for the key prefixes and wrappers understood);
- segmentation (smp on a timm encoder): a timm pretrained tag of the encoder, as ``a1_in1k`` or
  ``resnet18.a1_in1k``, or ``default`` (alias ``imagenet``) for timm's default tag of the encoder.
  smp's ``tu-`` encoders take their weights from timm, so these are smp's encoder weights too;
- detection: a torchvision weights enum of the backbone, ``VGG16_BN_Weights.IMAGENET1K_V1``
  (SSD300) or ``MobileNet_V3_Large_Weights.IMAGENET1K_V1`` / ``IMAGENET1K_V2`` (SSDLite320), with or
  without the enum's class name, or ``default`` / ``imagenet`` for the enum's ``DEFAULT``.

A framework name is downloaded by the framework's own machinery (timm's Hugging Face Hub or URL
loader, torchvision's ``load_state_dict_from_url``) when the model is built, and read from its cache
afterwards; checking a name here never touches the network.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import FinetuneError
from .state_dicts import WHOLE_MODEL, Target, load_matching, read_state_dict

__all__ = [
    "FILE_SUFFIXES",
    "TORCHVISION_WEIGHTS",
    "Pretrained",
    "fetch_failed",
    "file_sha256",
    "load_weights",
    "resolve_pretrained",
]

#: The file types --pretrained reads.
FILE_SUFFIXES = (".safetensors", ".pth", ".pt")
#: Other endings that mark SOURCE as a file path rather than a weights name (refused with the fix).
_OTHER_FILE_SUFFIXES = (".bin", ".ckpt", ".h5", ".hdf5", ".npz", ".npy", ".onnx", ".pkl", ".pb", ".msgpack", ".tar")
#: Words for the framework's default weights of the model's backbone.
DEFAULT_WORDS = ("default", "imagenet")
#: The torchvision weights enum of each detector's backbone.
TORCHVISION_WEIGHTS = {"ssd300_vgg16bn": "VGG16_BN_Weights", "ssdlite320": "MobileNet_V3_Large_Weights"}


@dataclass
class Pretrained:
    """A resolved ``--pretrained`` source: a file (``path``) or a framework weights ``name`` (kind timm/torchvision).

    ``loaded`` is filled when the weights are loaded (what went into which part of the model);
    :meth:`as_dict` is what metrics.json and config.json record.
    """

    source: str
    kind: str
    path: Path | None = None
    name: str | None = None
    url: str | None = None
    hf_hub_id: str | None = None
    sha256: str | None = None
    loaded: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values: the source as given, what it resolved to, its checksum, and the load report."""
        out: dict[str, Any] = {"source": self.source, "kind": self.kind}
        if self.path is not None:
            out["path"] = str(self.path)
        for key in ("name", "url", "hf_hub_id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["sha256"] = self.sha256
        out.update(self.loaded)
        return out

    def cached_file_sha256(self) -> str | None:
        """SHA-256 of the file the framework downloaded for a weights name, if it is in the framework's cache."""
        for path in self._cached_files():
            if path.is_file():
                return file_sha256(path)
        return None

    def _cached_files(self) -> list[Path]:
        found: list[Path] = []
        if self.hf_hub_id:
            try:
                from huggingface_hub import try_to_load_from_cache

                repo, _, revision = self.hf_hub_id.partition("@")
                for filename in ("model.safetensors", "pytorch_model.bin"):
                    hit = try_to_load_from_cache(repo, filename, revision=revision or None)
                    if isinstance(hit, str):
                        found.append(Path(hit))
            except Exception:  # no hub library or an unreadable cache: the hash is a courtesy, not a must
                pass
        if self.url and not self.hf_hub_id:  # timm prefers the Hub where a weights name has both
            import torch.hub

            found.append(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.url).path))
        return found


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _looks_like_file(text: str) -> bool:
    suffix = Path(text).suffix.lower()
    return (
        "/" in text
        or os.sep in text
        or text.startswith("~")
        or suffix in FILE_SUFFIXES
        or suffix in _OTHER_FILE_SUFFIXES
        or Path(text).expanduser().exists()
    )


def _resolve_file(text: str, names_hint: str) -> Pretrained:
    path = Path(text).expanduser()
    if not path.exists():
        raise FinetuneError(
            f"--pretrained {text}: no such file. Give an existing .safetensors or .pth/.pt state dict, "
            f"or a weights name ({names_hint})"
        )
    if path.is_dir():
        raise FinetuneError(
            f"--pretrained {text} is a folder; give the weights file inside it (.safetensors, .pth or .pt)"
        )
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise FinetuneError(
            f"--pretrained {text}: a {path.suffix or 'suffix-less'} file is not read; give a .safetensors file or a "
            f"state dict saved with torch.save(model.state_dict(), 'weights.pth') (.pth or .pt). A torch.save state "
            f"dict under another name can be renamed to .pth"
        )
    return Pretrained(source=text, kind="file", path=path.resolve())


def resolve_pretrained(task: str, model: str, encoder: str, source: str) -> Pretrained:
    """``source`` as a file or a framework weights name for ``model``; else FinetuneError naming the valid names.

    Offline and cheap: a file is checked for existence and type (read only when the model is built),
    a name against timm's list of pretrained tags or the torchvision enum's members.
    """
    if not isinstance(source, str) or not source.strip():
        raise FinetuneError(f"--pretrained needs a weights file or a weights name, got {source!r}")
    text = source.strip()
    if task == "segmentation":
        if _looks_like_file(text):
            return _resolve_file(text, "a timm tag of the encoder, or 'default'")
        return _resolve_timm(text, encoder)
    if _looks_like_file(text):
        return _resolve_file(text, f"{TORCHVISION_WEIGHTS[model]}.<member>, or 'default'")
    return _resolve_torchvision(text, model)


def _resolve_timm(text: str, encoder: str) -> Pretrained:
    import timm

    from .models_segmentation import normalise_encoder

    arch, _, encoder_tag = normalise_encoder(encoder).partition(".")
    available = timm.list_pretrained(f"{arch}.*")
    tags = [name.split(".", 1)[1] for name in available]
    valid = f"{', '.join(tags)} (as TAG or {arch}.TAG), or default" if tags else ""
    if not tags:
        raise FinetuneError(
            f"--pretrained {text}: timm has no pretrained weights for the encoder {arch}; give a weights file "
            f"(.safetensors, .pth or .pt), or an --encoder with pretrained weights (timm.list_pretrained())"
        )
    if text.lower() in DEFAULT_WORDS:
        tag = encoder_tag or timm.models.get_pretrained_cfg(arch).tag
    else:
        named_arch, dot, tag = text.rpartition(".") if "." in text else ("", "", text)
        if dot and named_arch != arch:
            raise FinetuneError(
                f"--pretrained {text} names weights of timm's {named_arch}, but the encoder is {arch}; use "
                f"--encoder {named_arch}, or weights of {arch}: {valid}"
            )
        if encoder_tag and tag != encoder_tag:
            raise FinetuneError(
                f"--encoder {encoder} already names the weights {encoder_tag!r}, and --pretrained {text} names "
                f"{tag!r}; give the tag once (--encoder {arch} --pretrained {tag})"
            )
    name = f"{arch}.{tag}"
    if name not in available:
        raise FinetuneError(f"--pretrained {text}: timm has no weights {name!r} for the encoder {arch}; choose {valid}")
    cfg = timm.models.get_pretrained_cfg(name)
    return Pretrained(source=text, kind="timm", name=name, url=cfg.url or None, hf_hub_id=cfg.hf_hub_id or None)


def _resolve_torchvision(text: str, model: str) -> Pretrained:
    import torchvision.models

    enum_name = TORCHVISION_WEIGHTS[model]
    enum = getattr(torchvision.models, enum_name)
    members = list(enum.__members__)  # the aliases (DEFAULT) included
    valid = ", ".join(f"{enum_name}.{m}" for m in members) + " (the class name may be left out), or default"
    if text.lower() in DEFAULT_WORDS:
        weights = enum.DEFAULT
    else:
        named_enum, dot, member = text.rpartition(".") if "." in text else ("", "", text)
        if dot and named_enum != enum_name:
            raise FinetuneError(
                f"--pretrained {text} is not a weights name of {model}'s backbone; its backbone takes {valid}"
            )
        if member.upper() not in members:
            raise FinetuneError(f"--pretrained {text}: {enum_name} has no member {member!r}; choose {valid}")
        weights = enum[member.upper()]
    return Pretrained(source=text, kind="torchvision", name=f"{enum_name}.{weights.name}", url=weights.url)


def fetch_failed(pretrained: Pretrained, framework: str, exc: Exception) -> FinetuneError:
    """The error for a framework that could not fetch or load a weights name (offline, no cache, a bad download)."""
    where = pretrained.hf_hub_id or pretrained.url or pretrained.name
    first = str(exc).splitlines()[0] if str(exc) else ""
    return FinetuneError(
        f"--pretrained {pretrained.source}: {framework} could not fetch or load the weights {pretrained.name} "
        f"from {where} ({type(exc).__name__}: {first}). Run once on a machine with "
        f"internet access to fill {framework}'s cache, or give a local .safetensors/.pth file"
    )


def load_weights(pretrained: Pretrained, targets: Sequence[Target]) -> None:
    """Load a file (into the whole model or the part it matches) or a torchvision name (into the backbone).

    Fills ``pretrained.sha256`` (the file's, or the torchvision cache file's) and ``pretrained.loaded``.
    """
    if pretrained.kind == "file":
        assert pretrained.path is not None
        state = read_state_dict(pretrained.path)
        pretrained.sha256 = file_sha256(pretrained.path)
        origin = str(pretrained.path)
    elif pretrained.kind == "torchvision":
        import torchvision.models

        weights = torchvision.models.get_weight(pretrained.name)
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:
            raise fetch_failed(pretrained, "torchvision", exc) from exc
        pretrained.sha256 = pretrained.cached_file_sha256()
        origin = f"torchvision's {pretrained.name}"
        targets = [t for t in targets if t.label != WHOLE_MODEL]  # the weights of a backbone, never of a detector
    else:
        raise ValueError(f"load_weights takes files and torchvision names; {pretrained.kind} weights load in the build")
    pretrained.loaded = load_matching(state, targets, origin)
