"""Pretrained encoder weights: a local state-dict file, or timm's own weights.

A file holds a state dict, saved with ``torch.save``, either plain or wrapped under
``"state_dict"`` or ``"model"`` (common checkpoint layouts). Its keys are matched to
the encoder's: a DDP ``module.`` prefix is stripped, then, when that makes keys
match, an ``encoder.`` or ``backbone.`` prefix (keys outside it, e.g. a whole BCL
model's heads, are left out); the weights of a classifier head the encoder lacks
(``fc.``, ``head.``, ``classifier.``, ``last_linear.``) are dropped. What remains
must fit the encoder exactly. Every problem is a one-line
:class:`~balcon.errors.BalconError` naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from balcon.errors import BalconError, load_failure, short_reason

__all__ = ["HEAD_PREFIXES", "load_pretrained"]

#: Prefixes of classifier-head keys dropped when the encoder has no such key.
HEAD_PREFIXES = ("fc.", "head.", "classifier.", "last_linear.")
_WRAPPER_KEYS = ("state_dict", "model")
_OWNER_PREFIXES = ("encoder.", "backbone.")
_SHOWN = 3  # keys named in a message or a description, per kind


def load_pretrained(encoder: nn.Module, source: str, encoder_name: str) -> str:
    """Load pretrained weights into ``encoder`` (in place); return a one-line description.

    Args:
        encoder: the encoder built for ``encoder_name`` (e.g. ``model.encoder``).
        source: ``model.pretrained``: ``"timm"`` for timm's pretrained weights of a
            ``timm:<model>`` encoder, or the path of a local state-dict file.
        encoder_name: ``model.encoder``, named in messages.

    Returns:
        e.g. ``"loaded 318 tensors from r50.pth; ignored fc.weight, fc.bias"``.

    Raises:
        BalconError: the weights cannot be had, or do not fit the encoder.
    """
    if source == "timm":
        return _load_timm(encoder, encoder_name)
    return _load_file(encoder, Path(source).expanduser(), encoder_name)


def _shown(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _load_timm(encoder: nn.Module, encoder_name: str) -> str:
    if not encoder_name.startswith("timm:"):
        raise BalconError(
            f"model.pretrained 'timm' is for timm:<model> encoders, not {encoder_name!r}; "
            "give a local state-dict file as model.pretrained instead"
        )
    import timm

    model_name = encoder_name[5:]
    try:
        source = timm.create_model(model_name, pretrained=True, num_classes=0)
    except Exception as err:  # offline, no such weights, hub errors: all mean the same here
        raise BalconError(
            f"model.pretrained 'timm': could not get timm's pretrained weights for "
            f"{model_name!r} ({short_reason(err)}); download them and give the file as "
            "model.pretrained"
        ) from None
    what = f"timm's pretrained {model_name}"
    state = {k: v for k, v in source.state_dict().items() if isinstance(v, Tensor)}
    _check_fit(encoder, state, what, encoder_name)
    encoder.load_state_dict(state, strict=True)
    return f"loaded {len(state)} tensors from {what}"


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise BalconError(
            f"model.pretrained: no file {str(path)!r}; give the path of a state-dict file "
            "(torch.save(model.state_dict(), path)), 'timm' for a timm encoder, or null"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BalconError(
            f"model.pretrained {str(path)!r}: torch.load(weights_only=True) cannot read it "
            f"({load_failure(err)}); save the encoder's state dict with torch.save"
        ) from None
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    ):
        raise BalconError(
            f"model.pretrained {str(path)!r} is not a state dict (a dict of tensors, plain "
            "or under 'state_dict' or 'model'); save one with "
            "torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _match_keys(
    state: dict[str, Tensor], wanted: set[str]
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """``(state, stripped prefixes, ignored keys)`` with keys renamed to fit ``wanted``."""
    stripped: list[str] = []
    if any(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
        stripped.append("module.")
    ignored: list[str] = []
    best = len(state.keys() & wanted)
    for prefix in _OWNER_PREFIXES:
        candidate = _strip(state, prefix)
        if len(candidate.keys() & wanted) > best:
            ignored = [k for k in state if not k.startswith(prefix)]
            state, best = candidate, len(candidate.keys() & wanted)
            stripped.append(prefix)
            break
    heads = [k for k in state if k not in wanted and k.startswith(HEAD_PREFIXES)]
    for key in heads:
        del state[key]
    return state, stripped, ignored + heads


def _check_fit(encoder: nn.Module, state: dict[str, Tensor], what: str, name: str) -> None:
    own = encoder.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (older checkpoints lack it)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = [
        f"{len(keys)} {kind} ({_shown(keys)})"
        for kind, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches, file vs encoder", mismatched),
        )
        if keys
    ]
    raise BalconError(
        f"model.pretrained {what} does not fit model.encoder {name!r}: "
        f"{'; '.join(problems)}; the weights must be for model.encoder {name!r}"
    )


def _load_file(encoder: nn.Module, path: Path, encoder_name: str) -> str:
    state, stripped, ignored = _match_keys(_read_state_dict(path), set(encoder.state_dict()))
    _check_fit(encoder, state, repr(str(path)), encoder_name)
    encoder.load_state_dict(state, strict=True)
    text = f"loaded {len(state)} tensors from {path}"
    if stripped:
        text += f" (stripped {', '.join(repr(p) for p in stripped)})"
    if ignored:
        text += f"; ignored {_shown(ignored)}"
    return text
