#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, in one short run on a CUDA machine (one H100/H200):
#   bench/run_gpu_benchmarks.sh OUT_DIR [VLGUARD_TEST_JSON_DIR]
# Runs the 7B-shaped evaluation benchmark (1,558 prompts, 256 new tokens) and the 7B-shaped training
# step benchmark (LoRA and full), each under its own time limit, writing JSON and logs to OUT_DIR.
# If a folder .whl/ holds wheels, they are installed first into /tmp/site (to match the pinned versions
# on a machine that has a different transformers).
set -uo pipefail
out=${1:?usage: bench/run_gpu_benchmarks.sh OUT_DIR [VLGUARD_DATA_DIR]}
data=${2:-../shared/data/vlguard}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.txt"
timeout 360 python3 bench/eval_throughput.py --gpu-7b --data "$data" --out "$out/eval_gpu7b.json" 2>&1 | tee "$out/eval_gpu7b.log"
timeout 170 python3 bench/train_throughput.py --gpu-7b --out "$out/train_gpu7b.json" 2>&1 | tee "$out/train_gpu7b.log"
