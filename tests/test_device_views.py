"""The device pipeline: its randomness, the recipe's distributions over 20,000 draws, its views.

The parameters come from a counter-based hash, so these statistics are deterministic:
each rate is checked against the recipe within 4.5 standard errors of a binomial
(or a two-sample Kolmogorov-Smirnov test against torchvision's own sampler).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from conftest import noise_and_walks
from scipy import stats
from torchvision import transforms as T

from balcon.config import DataConfig
from balcon.data import load_digits
from balcon.data.batch_ops import CIFAR10_POLICY
from balcon.data.device_views import (
    DeviceViews,
    policy_table,
    resolve_pipeline,
    sample_keys,
    sim_params,
    strong_params,
    uniforms,
)
from balcon.errors import BalconError

N = 20_000
KEYS = sample_keys(0, 3, torch.arange(N))
STRONG = strong_params(uniforms(KEYS, 0, 10), 32, policy_table(32, 32))
SIM = sim_params(uniforms(KEYS, 1, 35), 32, [0.08, 1.0], blur_prob=0.5)


def near(rate: float, p: float, n: int = N) -> bool:
    """``rate`` of ``n`` draws is within 4.5 binomial standard errors of ``p``."""
    return abs(rate - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_uniforms_are_uniform_independent_and_keyed():
    u = uniforms(KEYS, 0, 10)
    assert 0 <= u.min() and u.max() < 1
    for j in range(10):
        assert stats.kstest(u[:, j].numpy(), "uniform").pvalue > 1e-3
    corr = torch.corrcoef(u.T)
    assert (corr - torch.eye(10)).abs().max() < 4.5 / math.sqrt(N)
    assert len(set(KEYS.tolist())) > 0.999 * N  # 32-bit keys: a few collisions at most
    assert not torch.equal(sample_keys(0, 4, torch.arange(5)), sample_keys(0, 3, torch.arange(5)))
    assert not torch.equal(sample_keys(1, 3, torch.arange(5)), sample_keys(0, 3, torch.arange(5)))
    assert torch.equal(sample_keys(0, 3, torch.tensor([7, 2])), KEYS[[7, 2]])


def test_crop_flip_and_cutout_rates():
    for name, high in (("top", 9), ("left", 9), ("cy", 32), ("cx", 32)):
        counts = torch.bincount(STRONG[name], minlength=high)
        assert len(counts) == high and all(near(c / N, 1 / high) for c in counts.tolist()), name
    assert near(STRONG["flip"].float().mean().item(), 0.5)
    assert near(SIM["flip"].float().mean().item(), 0.5)


def test_each_sample_draws_its_own_sub_policy_and_op_rates_follow_it():
    combos, _ = policy_table(32, 32)
    sub = STRONG["sub"]
    shares = torch.bincount(sub, minlength=25) / N
    assert all(near(s, 1 / 25) for s in shares.tolist())
    applied: Counter = Counter()
    expected: Counter = Counter()
    for s, policy in enumerate(CIFAR10_POLICY):
        mine = sub == s
        for slot, (op, p, _) in enumerate(policy):
            chosen = STRONG["ops"][mine, slot]
            assert near((chosen >= 0).float().mean().item(), p, int(mine.sum()))
            names = {combos[c][0] for c in chosen[chosen >= 0].tolist()}
            assert names <= {op}
            applied[op] += int((chosen >= 0).sum())
            expected[op] += p / 25
    for op, count in applied.items():  # each op's application rate over all samples
        assert near(count / N, min(expected[op], 1.0)), op
    signed = [c for c in STRONG["ops"].flatten().tolist() if c >= 0 and combos[c][1] != 0
              and combos[c][0] not in ("Posterize", "Solarize")]
    negative = sum(combos[c][1] < 0 for c in signed) / len(signed)
    assert near(negative, 0.5, len(signed))


def test_resized_crop_boxes_follow_torchvisions_sampler():
    boxes = SIM["boxes"]
    area = (boxes[:, 2] * boxes[:, 3]).float() / 1024
    ratio = (boxes[:, 3].float() / boxes[:, 2].float()).log()
    torch.manual_seed(0)
    crop = T.RandomResizedCrop(32, scale=(0.08, 1.0))
    ref = torch.tensor([crop.get_params(torch.zeros(3, 32, 32), crop.scale, crop.ratio)
                        for _ in range(N)])
    ref_area = (ref[:, 2] * ref[:, 3]).float() / 1024
    ref_ratio = (ref[:, 3].float() / ref[:, 2].float()).log()
    assert stats.ks_2samp(area.numpy(), ref_area.numpy()).pvalue > 1e-3
    assert stats.ks_2samp(ratio.numpy(), ref_ratio.numpy()).pvalue > 1e-3
    for pos, size in ((0, 2), (1, 3)):  # the box lies inside the image
        assert (boxes[:, pos] >= 0).all() and (boxes[:, pos] + boxes[:, size] <= 32).all()
    assert stats.ks_2samp(boxes[:, 0].numpy(), ref[:, 0].numpy()).pvalue > 1e-3


def test_colour_jitter_grayscale_and_blur_draws():
    assert near(SIM["jitter"].float().mean().item(), 0.8)
    orders = Counter(tuple(o) for o in SIM["order"].tolist())
    assert len(orders) == 24 and all(near(c / N, 1 / 24) for c in orders.values())
    for j in range(3):
        f = SIM["factors"][:, j]
        assert 0.6 <= f.min() and f.max() <= 1.4
        assert stats.kstest(f.numpy(), "uniform", args=(0.6, 0.8)).pvalue > 1e-3
    assert stats.kstest(SIM["hue"].numpy(), "uniform", args=(-0.1, 0.2)).pvalue > 1e-3
    assert near(SIM["gray"].float().mean().item(), 0.2)
    assert near(SIM["blur"].float().mean().item(), 0.5)
    assert 0.1 <= SIM["sigma"].min() and SIM["sigma"].max() <= 2.0


@pytest.fixture(scope="module")
def digits_views() -> DeviceViews:
    train, _ = load_digits()
    return DeviceViews(train, DataConfig(hflip=False, sim_blur_prob=0.3), 3, seed=0,
                       device=torch.device("cpu"))


def test_views_depend_on_the_sample_not_on_its_batch(digits_views: DeviceViews):
    """What makes resume and any process count see the same views."""
    alone, labels = digits_views(5, torch.tensor([9]))
    crowd, crowd_labels = digits_views(5, torch.tensor([3, 9, 100, 7]))
    for a, b in zip(alone, crowd, strict=True):
        assert a.shape == (1, 3, 32, 32) and b.dtype == torch.float32
        assert torch.equal(a[0], b[1])
    assert labels[0] == crowd_labels[1]
    other_epoch, _ = digits_views(6, torch.tensor([9]))
    assert not torch.equal(other_epoch[0], alone[0])
    assert not torch.equal(alone[1], alone[2])  # views 2 and 3 draw their own


def test_cutout_holes_and_normalisation():
    """The two fills differ exactly in the hole: black (``-mean / std`` after normalising)
    or the mean colour (0); the hole is a 16 x 16 square clipped at the border."""
    import numpy as np

    from balcon.data import ImageSet

    grey = ImageSet(labels=np.zeros(400, dtype=np.int64), class_names=["a", "b"],
                    pixels=np.full((400, 32, 32, 3), 128, dtype=np.uint8))
    made = {fill: DeviceViews(grey, DataConfig(cutout_fill=fill), 1, 0, torch.device("cpu"))(
        0, torch.arange(400))[0][0] for fill in ("black", "mean")}
    holes = (made["black"] != made["mean"]).any(dim=1)
    data = DataConfig()
    black = (-torch.tensor(data.mean) / torch.tensor(data.std))[None, :, None]
    assert torch.allclose(made["black"].permute(0, 2, 3, 1)[holes], black[0, :, 0])
    assert (made["mean"].permute(0, 2, 3, 1)[holes] == 0).all()
    sizes = holes.flatten(1).sum(1).float()
    assert (sizes >= 64).all() and (sizes <= 256).all()  # a quarter square at least
    # Cutout's expected area with a uniform centre: (E[clipped side])^2 = (16 - 64/32)^2
    assert abs(sizes.mean().item() - 196.0) < 8


def test_pipeline_choice_and_refusals(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_pipeline(DataConfig(), cpu) == "device"  # measured faster on CPU too
    assert resolve_pipeline(DataConfig(), cuda) == "device"
    assert resolve_pipeline(DataConfig(pipeline="workers"), cuda) == "workers"
    assert resolve_pipeline(DataConfig(view_style="imagenet", image_size=224), cuda) == "workers"
    assert resolve_pipeline(DataConfig(pipeline="device"), cpu) == "device"
    from balcon.config import Config, apply_overrides

    with pytest.raises(BalconError, match="data.pipeline=device makes the 32-px cifar views"):
        apply_overrides(Config(), ["data.view_style=imagenet", "data.pipeline=device"])
    import balcon.data.device_views as dv

    monkeypatch.setattr(dv, "_free_bytes", lambda device: 1000)
    train, _ = load_digits()
    with pytest.raises(BalconError, match="set data.pipeline=workers"):
        DeviceViews(train, DataConfig(), 1, 0, torch.device("cpu"))


def _pil_sim_view(image, p: dict, b: int, data: DataConfig) -> torch.Tensor:
    """View 2 of one PIL image by torchvision's transforms (the published pipeline's
    functions, in its order) at sample ``b``'s parameters in ``p``."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TV

    x = TV.resized_crop(image, *p["boxes"][b].tolist(), [32, 32], InterpolationMode.BILINEAR)
    if p["flip"][b]:
        x = TV.hflip(x)
    if p["jitter"][b]:
        adjust = (TV.adjust_brightness, TV.adjust_contrast, TV.adjust_saturation,
                  TV.adjust_hue)
        factors = [*p["factors"][b].tolist(), float(p["hue"][b])]
        for op in p["order"][b].tolist():
            x = adjust[op](x, factors[op])
    if p["gray"][b]:
        x = TV.rgb_to_grayscale(x, 3)
    return TV.normalize(TV.to_tensor(x), data.mean, data.std)


def test_contrastive_views_equal_torchvisions_pil_transforms_pixel_for_pixel():
    """At the same parameters a device-made view 2 is the published PIL pipeline's view
    bit for bit: each step rounds to 8 bits where PIL does (the crop's two passes, each
    blend, the 8-bit HSV of the hue, the luma), for every order of the adjustments."""
    import numpy as np
    from PIL import Image

    from balcon.data import ImageSet

    pixels = noise_and_walks(48, seed=0)
    n = len(pixels)
    data = DataConfig()
    views = DeviceViews(ImageSet(labels=np.zeros(n, dtype=np.int64), class_names=["a"],
                                 pixels=pixels), data, 3, seed=0, device=torch.device("cpu"))
    p = sim_params(uniforms(sample_keys(0, 1, torch.arange(n)), 1, 35), 32,
                   data.sim_crop_scale, data.sim_blur_prob)
    assert p["jitter"].float().mean() > 0.6 and p["gray"].any() and p["flip"].any()
    made = views.sim(views.pixels, p)
    ref = torch.stack([_pil_sim_view(Image.fromarray(a), p, b, data)
                       for b, a in enumerate(pixels)])
    assert torch.equal(made, ref)
