"""Models: the CIFAR ResNets, the BCL model's three outputs, encoders by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balcon.config import ModelConfig
from balcon.errors import BalconError
from balcon.models import (
    BCLModel,
    CosineClassifier,
    build_encoder,
    build_model,
    resnet_cifar,
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
    projections, logits, prototypes = model(torch.randn(4, 3, 32, 32))
    assert projections.shape == (4, 16) and prototypes.shape == (3, 16)
    assert logits.abs().max() <= 5.0 + 1e-4
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


@pytest.mark.parametrize("name", ["resnet33", "resnet2", "vgg16", "timm:no_such_model_xyz", ""])
def test_build_encoder_unknown(name):
    with pytest.raises(BalconError) as err:
        build_encoder(name)
    assert "\n" not in str(err.value) and repr(name) in str(err.value)
