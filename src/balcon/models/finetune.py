"""Fine-tuning a pretrained encoder: which of its parameters train, and how.

``model.finetune`` picks the mode; the classifier and both heads always train:

- ``full``: every parameter trains (the encoder at ``optim.encoder_lr_scale`` times the
  heads' learning rate);
- ``linear``: the encoder is frozen;
- ``partial``: the last ``model.trainable_blocks`` blocks of the encoder train (timm's
  own block grouping, ``group_matcher``; the final norm goes with the last block), the
  rest is frozen; for other encoders a block is a top-level child (``layer4``, ...);
- ``lora``: the encoder is frozen and low-rank adapters (rank ``model.lora_rank``) on
  its linear layers train, through ``peft`` (``pip install 'balcon[lora]'``).

Frozen means frozen: a frozen module stays in eval mode (its BatchNorm statistics do
not move) and its parameters get no gradient. ``model.freeze_bn`` also keeps every
BatchNorm of the encoder in eval mode (its affine weights still train where the mode
trains them).
"""

from __future__ import annotations

from torch import nn

from balcon.config import ModelConfig
from balcon.errors import BalconError

__all__ = ["apply_finetune", "check_finetune", "encoder_blocks", "merge_lora"]

#: The linear layers LoRA adapts in a timm ViT: its blocks' attention and MLP.
LORA_TARGETS = r".*blocks\.\d+\..*\.(qkv|proj|fc1|fc2)$"


def encoder_blocks(encoder: nn.Module) -> list[list[str]]:
    """The encoder's parameter names grouped into blocks, first to last."""
    if hasattr(encoder, "group_matcher"):  # timm: stem, blocks, final norm with the last
        from timm.models import group_parameters

        return list(group_parameters(encoder, encoder.group_matcher(coarse=True)).values())
    groups: dict[str, list[str]] = {}
    for name, _ in encoder.named_parameters():
        groups.setdefault(name.split(".")[0], []).append(name)
    return list(groups.values())


def _frozen_names(encoder: nn.Module, cfg: ModelConfig) -> set[str]:
    names = {n for n, _ in encoder.named_parameters()}
    if cfg.finetune in ("linear", "lora"):
        return names
    if cfg.finetune == "partial":
        blocks = encoder_blocks(encoder)
        if cfg.trainable_blocks > len(blocks):
            raise BalconError(f"model.trainable_blocks {cfg.trainable_blocks} exceeds the "
                              f"{len(blocks)} blocks of {cfg.encoder}; use at most "
                              f"{len(blocks)} (or model.finetune=full)")
        return names - {n for block in blocks[-cfg.trainable_blocks:] for n in block}
    return set()


def check_finetune(cfg: ModelConfig) -> None:
    """Refuse, before any data is read, a mode whose library is missing (LoRA's peft)."""
    if cfg.finetune == "lora":
        try:
            import peft  # noqa: F401
        except ImportError:
            raise BalconError("model.finetune=lora needs peft: pip install 'balcon[lora]'") \
                from None


def _add_lora(encoder: nn.Module, cfg: ModelConfig) -> nn.Module:
    check_finetune(cfg)
    import re

    from peft import LoraConfig, inject_adapter_in_model

    if not any(re.fullmatch(LORA_TARGETS, n) for n, m in encoder.named_modules()
               if isinstance(m, nn.Linear)):
        raise BalconError(f"model.finetune=lora adapts a ViT's attention and MLP layers; "
                          f"{cfg.encoder} has none (use timm:vit_*, or model.finetune=partial)")
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, lora_dropout=0.0,
                        target_modules=LORA_TARGETS)
    return inject_adapter_in_model(config, encoder)


def apply_finetune(model: nn.Module, cfg: ModelConfig) -> None:
    """Set ``model`` (a BCLModel) up for ``cfg.finetune``: freeze what the mode freezes
    (no gradient, kept in eval mode by ``model.train()``), add LoRA's adapters.

    Call it after loading pretrained weights into the encoder (LoRA renames the layers
    it adapts) and before building the optimiser.
    """
    encoder = model.encoder
    frozen = _frozen_names(encoder, cfg)
    if cfg.finetune == "lora":
        model.encoder = encoder = _add_lora(encoder, cfg)  # adapters train; the rest frozen
    for name, param in encoder.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    # kept in eval mode by model.train(): every module all of whose parameters are frozen
    # (a whole frozen encoder: its dropout too), and with freeze_bn every BatchNorm
    model.frozen_modules = [
        m for m in encoder.modules()
        if (any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters()))
        or (cfg.freeze_bn and isinstance(m, nn.modules.batchnorm._BatchNorm))]


def merge_lora(model: nn.Module) -> nn.Module:
    """``model`` with every LoRA adapter merged into the layer it adapts (for export)."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "merge") and hasattr(module, "base_layer"):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child,
                    module.get_base_layer())
    return model
