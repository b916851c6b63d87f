#!/usr/bin/env bash
# Wheels of the packages balcon needs that the lent GPU machine lacks (Python 3.12,
# manylinux x86_64), into .whl/ of the repository root (ignored by git), for the device
# tool to carry: bash benchmarks/gpu_wheels.sh
set -eu
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  kornia==0.9.0 kornia_rs==0.2.0
ls -la .whl
