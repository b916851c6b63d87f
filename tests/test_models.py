"""Models: the CIFAR ResNets, the BCL model's three outputs, encoders by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balcon.config import ModelConfig
from balcon.errors import BalconError
from balcon.models import (
    BCLModel,
    CifarResNet,
    CosineClassifier,
    build_encoder,
    build_model,
    load_pretrained,
    resnet_cifar,
    torchvision_resnet_names,
)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_resnet_cifar_features(depth):
    net = resnet_cifar(depth)
    assert net.num_features == 64
    # 3 stages of (depth - 2) / 6 blocks, 2 convs each, plus the stem
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth - 1
    out = net(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    assert (out >= 0).all()  # pooled after a ReLU


def test_resnet32_size_and_shapes():
    net = resnet_cifar(32)
    assert 450_000 <= count_params(net) <= 480_000  # ~0.46M (0.4635M without a classifier)
    net.eval()
    with torch.no_grad():  # any input size pools down to 64 features
        assert net(torch.randn(2, 3, 40, 24)).shape == (2, 64)
    assert count_params(resnet_cifar(20)) < count_params(net) < count_params(resnet_cifar(44))


@pytest.mark.parametrize("depth", [0, 2, 19, 21, 33])
def test_resnet_cifar_bad_depth(depth):
    with pytest.raises(ValueError):
        resnet_cifar(depth)


def test_build_model_cosine_outputs():
    cfg = ModelConfig()
    model = build_model(cfg, num_classes=10)
    assert isinstance(model, BCLModel) and isinstance(model.classifier, CosineClassifier)
    x = torch.randn(6, 3, 32, 32) * 5  # large inputs, so raw logits would be large
    projections, logits, prototypes = model(x)
    assert projections.shape == (6, cfg.head_dim) == (6, 128)
    assert logits.shape == (6, 10)
    assert prototypes.shape == (10, 128)
    ones6, ones10 = torch.ones(6), torch.ones(10)
    assert torch.allclose(projections.norm(dim=1), ones6, atol=1e-5)
    assert torch.allclose(prototypes.norm(dim=1), ones10, atol=1e-5)
    assert logits.abs().max() <= cfg.cosine_scale + 1e-4
    # the logits are s * cos(features, weight rows)
    feats = model.encoder(x)
    cos = nn.functional.cosine_similarity(feats[:, None], model.classifier.weight[None], dim=2)
    assert torch.allclose(logits, cfg.cosine_scale * cos, atol=1e-4)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.predict(x), model(x)[1])


def test_build_model_scale_and_heads():
    cfg = ModelConfig(cosine_scale=5.0, head_hidden=32, head_dim=16)
    model = build_model(cfg, num_classes=3)
    x = torch.randn(4, 3, 32, 32)
    projections, logits, prototypes = model(x)
    assert projections.shape == (4, 16) and prototypes.shape == (3, 16)
    # the cosine classifier: scale times the cosine of feature and class weight, per pair
    features, weight = model.encoder(x).detach(), model.classifier.weight.detach()
    cos = torch.tensor([[float(f @ w / (f.norm() * w.norm())) for w in weight]
                        for f in features])
    assert torch.allclose(logits, 5.0 * cos, atol=1e-5)
    assert model.projection_head[0].out_features == 32


def test_build_model_linear_classifier():
    model = build_model(ModelConfig(classifier="linear"), num_classes=10)
    assert isinstance(model.classifier, nn.Linear)
    x = torch.randn(6, 3, 32, 32)
    projections, logits, prototypes = model(x)
    assert logits.shape == (6, 10)
    assert torch.allclose(logits, model.classifier(model.encoder(x)), atol=1e-5)
    assert torch.allclose(projections.norm(dim=1), torch.ones(6), atol=1e-5)
    assert prototypes.shape == (10, 128)
    assert torch.allclose(prototypes.norm(dim=1), torch.ones(10), atol=1e-5)


def test_bcl_model_gradients_reach_all_parameters():
    model = build_model(ModelConfig(head_hidden=16, head_dim=8), num_classes=4)
    projections, logits, prototypes = model(torch.randn(4, 3, 16, 16))
    (projections.sum() + logits.sum() + (projections @ prototypes.T).pow(2).sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_bcl_model_bad_arguments():
    with pytest.raises(ValueError):
        BCLModel(resnet_cifar(20), num_classes=10, classifier="mlp")
    with pytest.raises(ValueError):
        BCLModel(resnet_cifar(20), num_classes=1)
    with pytest.raises(ValueError):  # no num_features to read
        BCLModel(nn.Flatten(), num_classes=10)
    model = BCLModel(nn.Flatten(), num_classes=2, feature_dim=12, head_hidden=8, head_dim=4)
    assert model(torch.randn(3, 3, 2, 2))[1].shape == (3, 2)


def test_build_encoder_resnet_names():
    assert count_params(build_encoder("resnet32")) == count_params(resnet_cifar(32))
    assert build_encoder("resnet20").num_features == 64


def test_build_encoder_timm():
    net = build_encoder("timm:resnet18")
    assert net.num_features == 512
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512)
    model = BCLModel(net, num_classes=5, head_hidden=16, head_dim=8)
    model.eval()
    with torch.no_grad():
        projections, logits, prototypes = model(torch.randn(2, 3, 32, 32))
    assert projections.shape == (2, 8) and logits.shape == (2, 5) and prototypes.shape == (5, 8)


@pytest.mark.parametrize(
    "name",
    ["resnet33", "resnet2", "vgg16", "timm:no_such_model_xyz", "", "cifar_resnet33", "resnet18x"],
)
def test_build_encoder_unknown(name):
    with pytest.raises(BalconError) as err:
        build_encoder(name)
    assert "\n" not in str(err.value) and repr(name) in str(err.value)
    if not name.startswith("timm:"):  # the message lists the accepted forms
        assert "cifar_resnet" in str(err.value) and "resnet50" in str(err.value)


def test_torchvision_resnet_names():
    names = torchvision_resnet_names()
    for name in ("resnet18", "resnet50", "resnet152", "resnext50_32x4d", "wide_resnet50_2"):
        assert name in names
    assert "vgg16" not in names and "regnet_y_400mf" not in names


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_torchvision_encoder_features(name):
    net = build_encoder(name)
    assert type(net).__name__ == "ResNet" and net.num_features == 2048
    assert isinstance(net.fc, nn.Identity)
    assert not [n for n, _ in net.named_parameters() if n.startswith("fc.")]
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet32", "resnet8", "cifar_resnet50", "cifar_resnet32"])
def test_cifar_encoder_names(name):
    net = build_encoder(name)
    assert isinstance(net, CifarResNet) and net.num_features == 64
    depth = int(name.removeprefix("cifar_").removeprefix("resnet"))
    assert count_params(net) == count_params(resnet_cifar(depth))


def test_resnet50_means_torchvision():
    assert not isinstance(build_encoder("resnet50"), CifarResNet)
    assert isinstance(build_encoder("cifar_resnet50"), CifarResNet)


def test_bcl_model_on_resnet50():
    model = BCLModel(build_encoder("resnet50"), num_classes=5, head_hidden=2048, head_dim=1024)
    assert model.projection_head[0].in_features == 2048
    assert model.projection_head[0].out_features == 2048
    model.eval()
    with torch.no_grad():
        projections, logits, prototypes = model(torch.randn(2, 3, 32, 32))
    assert projections.shape == (2, 1024) and logits.shape == (2, 5)
    assert prototypes.shape == (5, 1024)
    assert torch.allclose(projections.norm(dim=1), torch.ones(2), atol=1e-5)


def _saved(tmp_path, obj, name="weights.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_load_pretrained_round_trip(tmp_path):
    import torchvision

    full = torchvision.models.resnet18(weights=None)  # with its 1000-class fc
    state = {"module." + k: v for k, v in full.state_dict().items()}
    path = _saved(tmp_path, {"state_dict": state, "epoch": 90})
    encoder = build_encoder("resnet18")
    text = load_pretrained(encoder, str(path), "resnet18")
    loaded = encoder.state_dict()
    expected = {k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert "\n" not in text and str(path) in text and f"loaded {len(expected)} tensors" in text
    assert "ignored" in text and "fc.weight" in text and "fc.bias" in text


def test_load_pretrained_prefixes_and_wrappers(tmp_path):
    source = resnet_cifar(8)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    heads = {"projection_head.0.weight": torch.zeros(2, 2), "classifier.weight": torch.zeros(3)}
    bcl_like = {**{"encoder." + k: v for k, v in source.state_dict().items()}, **heads}
    for obj in (
        source.state_dict(),
        {"model": bcl_like},
        {"backbone." + k: v for k, v in source.state_dict().items()},
    ):
        encoder = build_encoder("resnet8")
        load_pretrained(encoder, str(_saved(tmp_path, obj)), "resnet8")
        assert all(torch.equal(encoder.state_dict()[k], v) for k, v in source.state_dict().items())


def test_load_pretrained_tolerates_missing_num_batches_tracked(tmp_path):
    source = resnet_cifar(8)
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    encoder = build_encoder("resnet8")
    load_pretrained(encoder, str(_saved(tmp_path, state)), "resnet8")
    assert torch.equal(encoder.conv1.weight, source.conv1.weight)


def _error(encoder, source, name):
    with pytest.raises(BalconError) as err:
        load_pretrained(encoder, str(source), name)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_load_pretrained_missing_file(tmp_path):
    message = _error(resnet_cifar(8), tmp_path / "nope.pth", "resnet8")
    assert "nope.pth" in message and "no file" in message


def test_load_pretrained_not_a_state_dict(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    assert "garbage.pth" in _error(resnet_cifar(8), garbage, "resnet8")
    for obj in ([1, 2, 3], {"epoch": 3, "lr": 0.1}, {}):
        message = _error(resnet_cifar(8), _saved(tmp_path, obj, "list.pth"), "resnet8")
        assert "list.pth" in message and "not a state dict" in message


def test_load_pretrained_other_architecture(tmp_path):
    path = _saved(tmp_path, build_encoder("resnet50").state_dict())
    message = _error(build_encoder("resnext50_32x4d"), path, "resnext50_32x4d")
    assert "shape mismatches" in message and "'resnext50_32x4d'" in message
    assert "layer1.0.conv1.weight" in message and str(path) in message
    assert "missing" not in message and "unexpected" not in message


def test_load_pretrained_missing_and_unexpected_keys(tmp_path):
    state = resnet_cifar(8).state_dict()
    dropped = [k for k in state if k.startswith("layers.2.")]
    for key in dropped:
        del state[key]
    message = _error(resnet_cifar(8), _saved(tmp_path, state), "resnet8")
    # BatchNorm fills in num_batches_tracked itself: those do not count as missing
    counted = [k for k in dropped if not k.endswith("num_batches_tracked")]
    assert f"{len(counted)} missing keys" in message and "layers.2.conv1.weight" in message
    assert "model.encoder 'resnet8'" in message
    state = {**resnet_cifar(8).state_dict(), "extra.weight": torch.zeros(1)}
    message = _error(resnet_cifar(8), _saved(tmp_path, state), "resnet8")
    assert "1 unexpected keys (extra.weight)" in message


def test_load_pretrained_timm_source_needs_timm_encoder():
    message = _error(resnet_cifar(8), "timm", "resnet8")
    assert "timm:" in message and "'resnet8'" in message


def test_load_pretrained_timm_download_fails(monkeypatch):
    import timm

    encoder = build_encoder("timm:resnet18")
    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("cannot reach huggingface.co\nsecond line")
        return create(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    message = _error(encoder, "timm", "timm:resnet18")
    assert "download" in message and "model.pretrained" in message and "OSError" in message


def test_load_pretrained_timm_copies_weights(monkeypatch):
    import timm

    encoder = build_encoder("timm:resnet18")
    create = timm.create_model
    made = []

    def fake_hub(name, pretrained=False, **kwargs):  # "pretrained": random, but not encoder's
        model = create(name, pretrained=False, **kwargs)
        made.append(model)
        return model

    monkeypatch.setattr(timm, "create_model", fake_hub)
    text = load_pretrained(encoder, "timm", "timm:resnet18")
    assert "timm" in text and "resnet18" in text
    source = made[0].state_dict()
    assert all(torch.equal(v, source[k]) for k, v in encoder.state_dict().items())


def test_build_model_does_not_load_pretrained(tmp_path):
    """The file is the engine's business: no error for a missing one, and the weights
    are those of a seeded build without one."""
    cfg = ModelConfig(encoder="resnet8", pretrained=str(tmp_path / "absent.pth"))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3)
    torch.manual_seed(0)
    plain = build_model(ModelConfig(encoder="resnet8"), num_classes=3).state_dict()
    assert all(torch.equal(v, plain[k]) for k, v in model.state_dict().items())


def test_cosine_classifier_starts_at_unit_norm_as_the_official_one():
    """As NormedLinear: every class vector at norm 1 (balcon 0.2's were ~0.58)."""
    weight = BCLModel(build_encoder("resnet32"), num_classes=100).classifier.weight
    assert weight.shape == (100, 64)
    assert torch.allclose(weight.norm(dim=1), torch.ones(100), atol=1e-3)
    # directions are spread (uniform in the cube, then scaled), not one repeated vector
    cos = nn.functional.normalize(weight, dim=1) @ nn.functional.normalize(weight, dim=1).T
    assert cos.fill_diagonal_(0).abs().max() < 0.7


def test_cifar_resnet_shortcut_and_init_options():
    a = resnet_cifar(20)
    b = resnet_cifar(20, shortcut="B")
    # option B adds a 1x1 convolution + BatchNorm at the two shape changes
    extra = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert count_params(b) - count_params(a) == extra
    x = torch.randn(2, 3, 32, 32)
    assert b(x).shape == (2, 64)
    # LDAM-DRW's init: kaiming normal, fan-in; the stem has fan-in 27 and fan-out 144
    torch.manual_seed(0)
    stds = {init: resnet_cifar(32, conv_init=init).conv1.weight.std().item()
            for init in ("kaiming", "kaiming-fan-out", "torch")}
    assert stds["kaiming"] == pytest.approx((2 / 27) ** 0.5, rel=0.15)
    assert stds["kaiming-fan-out"] == pytest.approx((2 / 144) ** 0.5, rel=0.15)
    assert stds["torch"] == pytest.approx((1 / (3 * 27)) ** 0.5, rel=0.15)
    with pytest.raises(ValueError, match="shortcut"):
        resnet_cifar(20, shortcut="C")
    with pytest.raises(ValueError, match="conv_init"):
        resnet_cifar(20, conv_init="xavier")


def test_shortcut_options_refused_for_other_encoders():
    with pytest.raises(BalconError, match="CIFAR ResNets only"):
        build_encoder("resnet18", shortcut="B")
    with pytest.raises(BalconError, match="unknown"):
        build_encoder("resnet51", shortcut="B")
    cfg = ModelConfig(shortcut="B", conv_init="torch")
    assert count_params(build_model(cfg, 10)) > count_params(build_model(ModelConfig(), 10))
