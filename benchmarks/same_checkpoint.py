"""Whether two balcon checkpoints hold bit-identical training state.

    python benchmarks/same_checkpoint.py A.pt B.pt

Compares the epoch (and mid-epoch step), every tensor of the model and of the optimiser,
the gradient scaler and the RNG state, bit for bit (``torch.equal``); prints each
difference (a float tensor's with its largest absolute difference) and exits 1 on any,
0 when all agree. Used to check that a run stopped and
continued equals one that ran straight through (BENCHMARKS.md, the 200-epoch CPU runs).
"""

from __future__ import annotations

import sys

import torch


def leaves(obj, prefix: str = ""):
    """(path, value) of every leaf of nested dicts / lists / tuples."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def differences(a: dict, b: dict) -> list[str]:
    """Paths where the training state of ``a`` and ``b`` differs."""
    keys = ("epoch", "step", "model", "optimizer", "scaler", "rng")
    left = dict(leaves({k: a.get(k) for k in keys}))
    right = dict(leaves({k: b.get(k) for k in keys}))
    out = [f"{p}: only in one" for p in sorted(set(left) ^ set(right))]
    for path in sorted(set(left) & set(right)):
        x, y = left[path], right[path]
        same = torch.equal(x, y) if isinstance(x, torch.Tensor) and \
            isinstance(y, torch.Tensor) else x == y
        if not same:
            gap = ""
            if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and \
                    x.shape == y.shape and x.is_floating_point():
                gap = f" (max abs difference {(x.double() - y.double()).abs().max():.3g})"
            out.append(f"{path}: differs{gap}")
    return out


def main() -> int:
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in sys.argv[1:3])
    diff = differences(a, b)
    tensors = sum(isinstance(v, torch.Tensor) for _, v in leaves(a))
    print(f"epoch {a.get('epoch')} step {a.get('step')} vs epoch {b.get('epoch')} step "
          f"{b.get('step')}: {tensors} tensors; " + ("identical" if not diff else
                                                      f"{len(diff)} differ"))
    for line in diff[:20]:
        print("  " + line)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
