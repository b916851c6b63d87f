"""What machine a benchmark ran on, for the header of its results."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: Vector features that decide CPU speed in each precision, as /proc/cpuinfo names them.
CPU_FEATURES = (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                ("AMX", "amx_tile"))


def cpu_flags() -> str:
    """Which of AVX2, AVX-512, AVX512-BF16 and AMX this CPU has, e.g. ``AVX2 yes, AVX-512
    no, AVX512-BF16 no, AMX no`` (bf16 is native only with AVX512-BF16 or AMX)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = set(next(x for x in lines if x.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "flags unknown"
    return ", ".join(f"{name} {'yes' if flag in flags else 'no'}" for name, flag in CPU_FEATURES)


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu() -> str:
    """One line naming this CPU for a timing: cores, model, family and model numbers (they
    tell AMD's Zen generations apart where the model name is just "AMD EPYC"), flags."""
    ids = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in ids:
                ids[key.strip()] = value.strip()
    except OSError:
        pass
    family = f", family {ids['cpu family']} model {ids['model']}" if len(ids) == 2 else ""
    return f"{os.cpu_count()}-vCPU {cpu_model()}{family}; {cpu_flags()}"
