#!/usr/bin/env bash
# The GPU check of the fast paths (docs/benchmarks.md, "GPU check"), one command under 9 minutes on one
# H100, writing ONE JSON file:
#   bench/gpu_check.sh [OUT_JSON] [options of bench/gpu_check.py]     (default OUT_JSON: $OUT/gpu_check.json)
#   bench/gpu_check.sh x.json --cpu-smoke --work-dir /tmp/smoke         (the CPU dry run, tiny shapes)
# Parts: versions and a vLLM probe; a 7B-shaped LLaVA in bf16; the hf backend with the default and the
# static (compiled) KV cache on the same batches; a rank-128 LoRA step under bf16 autocast; vlguard eval
# --adapter. Each part is written into the JSON when done, and a second call skips what is there: a call
# cut off by its time limit is finished by the next one (the saved model stays in --work-dir,
# default /tmp/vlguard-gpu-check, while the machine lives; a fresh machine rebuilds it).
# Needs torch with CUDA; transformers, peft and the rest come from the machine or from wheels in .whl/
# (bench/carried_wheels.sh). PYTHON picks the interpreter (default python3); GPU_CHECK_TIMEOUT the
# seconds for the whole call (default 530).
set -uo pipefail
out_json=${1:-${OUT:?give OUT_JSON or set OUT}/gpu_check.json}
[[ $# -gt 0 ]] && shift
py=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source "$root/bench/carried_wheels.sh"
mkdir -p "$(dirname "$out_json")"
timeout "${GPU_CHECK_TIMEOUT:-530}" "$py" "$root/bench/gpu_check.py" --out "$out_json" "$@"
code=$?
[[ $code == 124 ]] && echo "gpu_check: stopped by the time limit; run the same command again to finish" >&2
exit $code
