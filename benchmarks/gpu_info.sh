#!/usr/bin/env bash
# Sourced by the GPU scripts: writes the machine's GPU, core count and library versions
# to $out/gpu.txt and prints them.
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  nproc
  python3 -c "import sys, torch, torchvision, timm; print(sys.version.split()[0], torch.__version__, torchvision.__version__, timm.__version__)"
} > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
