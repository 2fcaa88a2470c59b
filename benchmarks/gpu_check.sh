#!/usr/bin/env bash
# The prepared GPU check for a short lease (issue #15): one call on the lent machine.
# Installs the carried wheels (MONAI, nibabel: the machine's image lacks them), prints the card's state, then
# benchmarks/gpu_paper.py: every `paper` config eager / CUDA graph / torch.compile with MFU, MONAI beside our MAE.
# Usage (device tool): carry [".whl"], command `bash benchmarks/gpu_check.sh`; results land in $OUT.
# Make .whl here first: pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl monai==1.6.1 nibabel==5.4.2
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu,memory.used --format=csv
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.version.cuda)"
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PYTHONUNBUFFERED=1 timeout "${GPU_TIMEOUT:-400}" python3 benchmarks/gpu_paper.py --device cuda \
  --budget-s "${GPU_BUDGET:-290}" --out "$OUT/gpu_paper.json" "$@" 2>&1 | tee "$OUT/gpu_paper.log"
