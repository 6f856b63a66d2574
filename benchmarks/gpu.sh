#!/usr/bin/env bash
# The accelerator benchmark: every device row in a few minutes, written to the 'device'
# section of BENCHMARKS.md with the device's name. Run from the repository root on a
# machine with an accelerator, after `pip install -e ".[cuda]"`:
#   bash benchmarks/gpu.sh [ML-1M directory]
set -euo pipefail
data_dir="${1:-${FEDJAX_REC_DATA:-../shared/data}/ml-1m}"
python -c "import jax; d = jax.devices()[0]; print('device:', d.platform, d.device_kind); \
assert d.platform != 'cpu', 'no accelerator: jax sees only the CPU'"
python -m experiments.benchmark --suite=device --epochs=3 --data_dir="$data_dir" \
    --out=BENCHMARKS.md
