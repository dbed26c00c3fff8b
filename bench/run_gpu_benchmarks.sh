#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, in one short run on a CUDA machine (one H100/H200):
#   bench/run_gpu_benchmarks.sh OUT_DIR [VLGUARD_DATA_DIR] [eval|train|utility|all]
# eval: the 7B-shaped evaluation benchmark, hf with the static (compiled) cache, hf with the default
#       cache and vllm side by side on the whole VLGuard test set (1,558 prompts x 256 new tokens);
#       about 8 minutes on one H200 (estimate: model build and save, static ~2-3 min with its compile,
#       hf ~5 min with its probes, vLLM when installed), under a 9.5-minute limit.
# train: the 7B-shaped training step benchmark (LoRA and full), under a 3-minute limit.
# utility: the quick capability suite's shapes through lmms-eval on the 7B-shaped LLaVA (time per task,
#       batched vs one request at a time), under a 5-minute limit; needs lmms-eval (make install).
# all (default): eval and train, one after the other (utility runs only when asked for).
# The vllm column needs vLLM in the Python that runs this (pip install 'vlguard[vllm]'); without it
# the JSON says why and the hf columns still count. If a folder .whl/ holds wheels, they are installed
# first into /tmp/site (bench/carried_wheels.sh: the pinned versions on a machine without them).
# PYTHON picks the interpreter (default python3), e.g. PYTHON=.venv-vllm/bin/python after make install-vllm.
set -uo pipefail
out=${1:?usage: bench/run_gpu_benchmarks.sh OUT_DIR [VLGUARD_DATA_DIR] [eval|train|utility|all]}
data=${2:-../shared/data/vlguard}
which=${3:-all}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source bench/carried_wheels.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c "
import importlib.metadata as m
for p in ('torch', 'transformers', 'peft', 'vllm'):
    try:
        print(p, m.version(p))
    except m.PackageNotFoundError:
        print(p, 'not installed')
" | tee -a "$out/gpu.txt"
if [[ $which == eval || $which == all ]]; then
  timeout 570 "$py" bench/eval_throughput.py --gpu-7b --data "$data" --out "$out/eval_gpu7b.json" 2>&1 | tee "$out/eval_gpu7b.log"
fi
if [[ $which == train || $which == all ]]; then
  timeout 170 "$py" bench/train_throughput.py --gpu-7b --out "$out/train_gpu7b.json" 2>&1 | tee "$out/train_gpu7b.log"
fi
if [[ $which == utility ]]; then
  timeout 290 "$py" bench/utility_throughput.py --gpu-7b --out "$out/utility_gpu7b.json" 2>&1 | tee "$out/utility_gpu7b.log"
fi
