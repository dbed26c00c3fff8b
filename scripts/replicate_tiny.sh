#!/usr/bin/env bash
# Tiny-scale replication of VLGuard's post-hoc safety fine-tuning on CPU (docs/experiments.md).
#
#   scripts/replicate_tiny.sh [DATA] [OUT]
#
# DATA: the VLGuard annotations (default ../shared/data/vlguard); OUT: run folder (default
# runs/replicate-tiny). Steps: build a tiny VLM (tokenizer trained on VLGuard train texts) →
# "vanilla": instruction-tune it on the VLGuard train safe_safe pairs → "post-hoc": fine-tune vanilla on
# VLGuard train + the same safe_safe pairs → evaluate both on VLGuard test with blank images.
# Knobs (environment): SEED (initial weights, data order, evaluation; default 0), VANILLA_EPOCHS,
# POSTHOC_EPOCHS, VANILLA_LR, POSTHOC_LR, MAX_NEW_TOKENS, PROCS. scripts/replicate_tiny_seeds.sh runs
# several seeds and prints their mean and spread.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${1:-../shared/data/vlguard}
OUT=${2:-runs/replicate-tiny}
VANILLA_EPOCHS=${VANILLA_EPOCHS:-4}
POSTHOC_EPOCHS=${POSTHOC_EPOCHS:-8}
VANILLA_LR=${VANILLA_LR:-3e-3}
POSTHOC_LR=${POSTHOC_LR:-2e-3}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-64}
SEED=${SEED:-0}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One thread per process: the matrices of a 1M-parameter model are too small for two threads to help,
# and on a busy 2-core machine two threads spin against each other (measured ~8x slower per step).
export OMP_NUM_THREADS=1
PROCS=${PROCS:-2}
VLGUARD=${VLGUARD:-.venv/bin/vlguard}
if [ "$PROCS" = 2 ]; then
  # two data-parallel processes (gloo), one per core: ~2x the single-process speed on 2 cores
  TRAIN=(.venv/bin/accelerate launch --config_file configs/accelerate/ddp-cpu-2proc.yaml -m vlguard.cli.main train)
else
  TRAIN=("$VLGUARD" train)
fi
start=$(date +%s)

# Steps whose output is complete are skipped on a rerun (delete OUT/<step> to redo one).
[ -f "$OUT/base/config.json" ] || .venv/bin/python scripts/replicate_tiny_prep.py "$DATA" "$OUT" --seed "$SEED"

common=(method=full data.image_mode=blank global_batch_size=16 per_device_batch_size=$((16 / PROCS)) max_length=256
        group_by_length=true lr_scheduler=cosine warmup_ratio=0.03 save_steps=100000 logging_steps=25
        seed="$SEED" data.seed="$SEED")

# 1. vanilla: helpful, no safety data
[ -f "$OUT/vanilla/model/COMPLETE" ] || "${TRAIN[@]}" model.name_or_path="$OUT/base" data.recipe=instructions \
  data.instructions="$OUT/safe_safe_train.jsonl" lr="$VANILLA_LR" epochs="$VANILLA_EPOCHS" \
  output_dir="$OUT/vanilla" "${common[@]}"

# 2. post-hoc: VLGuard train (2,000 conversations, 2,977 pairs) + the same 977 helpfulness conversations
[ -f "$OUT/posthoc/model/COMPLETE" ] || "${TRAIN[@]}" model.name_or_path="$OUT/vanilla/model" data.recipe=posthoc data.vlguard="$DATA" \
  data.instructions="$OUT/safe_safe_train.jsonl" data.n_helpfulness=977 lr="$POSTHOC_LR" \
  epochs="$POSTHOC_EPOCHS" output_dir="$OUT/posthoc" "${common[@]}"
trained=$(date +%s)

# 3. evaluate both on VLGuard test (1,558 samples), blank images, greedy, refusal judge
for model in vanilla posthoc; do
  $VLGUARD eval --model "$OUT/$model/model" --data "$DATA" --image-mode blank --batch-size 64 \
    --max-new-tokens "$MAX_NEW_TOKENS" --seed "$SEED" --run-dir "$OUT/eval-$model" --no-progress
done
end=$(date +%s)

.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for model in ("vanilla", "posthoc"):
    metrics = json.load(open(f"{out}/eval-{model}/metrics.json"))["metrics"]
    pick = {(m["subset"], m["metric"]): m for m in metrics if m["judge"] == "refusal" and m["group"] == "all"}
    rows.append((model, pick[("unsafe", "attack_success_rate")], pick[("safe_unsafe", "attack_success_rate")],
                 pick[("safe_safe", "over_refusal_rate")]))
print("| model | ASR unsafe | ASR safe_unsafe | refusal rate safe_safe |")
print("|---|---|---|---|")
for model, *cells in rows:
    print(f"| {model} | " + " | ".join(f"{100 * c['value']:.1f} % [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]" for c in cells) + " |")
PY
echo "training: $((trained - start)) s; evaluation: $((end - trained)) s; total: $((end - start)) s"
