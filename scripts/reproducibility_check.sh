#!/usr/bin/env bash
# What is bit-reproducible in the tiny replication (docs/experiments.md): trains its first stage
# ("vanilla", scripts/replicate_tiny.sh step 1) three times from the same prepared data and model:
#   a, b: twice on this machine, as the script runs it;
#   c:    once with PyTorch's CPU kernels restricted to AVX2 (ATEN_CPU_CAPABILITY=avx2), which stands in
#         for "another CPU": the same code and inputs, other vectorised kernels.
# and compares the trained weights (SHA-256 over every parameter, from vlguard_train.json) and losses.
#
#   scripts/reproducibility_check.sh [PREP] [OUT]
#
# PREP: a folder prepared by scripts/replicate_tiny_prep.py (base/ and safe_safe_train.jsonl; default
# runs/replicate-tiny); OUT: where the three runs go (default runs/reproducibility).
set -euo pipefail
cd "$(dirname "$0")/.."
PREP=${1:-runs/replicate-tiny}
OUT=${2:-runs/reproducibility}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
TRAIN=(.venv/bin/accelerate launch --config_file configs/accelerate/ddp-cpu-2proc.yaml -m vlguard.cli.main train)
args=(model.name_or_path="$PREP/base" data.recipe=instructions data.instructions="$PREP/safe_safe_train.jsonl"
      lr=3e-3 epochs=4 method=full data.image_mode=blank global_batch_size=16 per_device_batch_size=8
      max_length=256 group_by_length=true lr_scheduler=cosine warmup_ratio=0.03 save_steps=100000
      logging_steps=25 progress=false)
for run in a b; do
  [ -f "$OUT/$run/model/COMPLETE" ] || "${TRAIN[@]}" "${args[@]}" output_dir="$OUT/$run"
done
[ -f "$OUT/c-avx2/model/COMPLETE" ] || ATEN_CPU_CAPABILITY=avx2 "${TRAIN[@]}" "${args[@]}" output_dir="$OUT/c-avx2"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = {}
for run in ("a", "b", "c-avx2"):
    p = json.load(open(f"{out}/{run}/model/vlguard_train.json"))
    runs[run] = (p["rank_fingerprints"], p["train_loss"])
    print(f"{run:7} weights {p['rank_fingerprints'][0][:16]}… (ranks agree: {len(set(p['rank_fingerprints'])) == 1})"
          f"  mean loss {p['train_loss']!r}")
print("a == b (same machine, same settings):", runs["a"] == runs["b"])
print("a == c (AVX2 kernels):", runs["a"] == runs["c-avx2"])
PY
