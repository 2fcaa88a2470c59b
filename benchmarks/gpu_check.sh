#!/usr/bin/env bash
# The prepared GPU check (one short call on a lent machine): install the carried wheels, then the paper-scale
# smoke of every `paper` config (build + a few fwd/bwd/AdamW steps at full size, bf16) -> results/paper_steps.json.
# Usage on the device: bash benchmarks/gpu_check.sh   (expects runs/nnformer_wheels/*.whl carried along)
set -uo pipefail
python -m pip install --no-deps -q runs/nnformer_wheels/*.whl 2>&1 | tail -1
python - <<'PY'
import importlib
for m in ("torch", "monai", "numpy", "yaml", "pandas", "nibabel", "scipy"):
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", e)
PY
export PYTHONPATH=$PWD
timeout 140 python benchmarks/paper_smoke.py --device cuda --steps 3 --out "$OUT/paper_steps.json"
