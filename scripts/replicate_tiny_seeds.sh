#!/usr/bin/env bash
# The tiny-scale replication (scripts/replicate_tiny.sh) over several seeds, with mean and spread.
#
#   scripts/replicate_tiny_seeds.sh [DATA] [OUT] [SEEDS...]
#
# DATA: the VLGuard annotations (default ../shared/data/vlguard); OUT: parent folder (default
# runs/replicate-tiny-seeds), one OUT/seed-<s> folder per seed; SEEDS default to 0 1 2. A seed changes
# the initial weights, the data order and the evaluation seed. Finished steps are skipped on a rerun.
# Prints one row per seed, then the mean, the sample standard deviation and the range, and writes
# OUT/summary.json. The other knobs of replicate_tiny.sh (epochs, lrs, PROCS, ...) pass through.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${1:-../shared/data/vlguard}
OUT=${2:-runs/replicate-tiny-seeds}
shift $(( $# > 2 ? 2 : $# ))
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)

for seed in "${SEEDS[@]}"; do
  echo "== seed $seed"
  SEED=$seed scripts/replicate_tiny.sh "$DATA" "$OUT/seed-$seed"
done

.venv/bin/python - "$OUT" "${SEEDS[@]}" <<'PY'
import json, statistics, sys

out, seeds = sys.argv[1], sys.argv[2:]
columns = [
    ("posthoc", "unsafe", "attack_success_rate"),
    ("posthoc", "safe_unsafe", "attack_success_rate"),
    ("posthoc", "safe_safe", "over_refusal_rate"),
    ("vanilla", "unsafe", "attack_success_rate"),
    ("vanilla", "safe_unsafe", "attack_success_rate"),
    ("vanilla", "safe_safe", "over_refusal_rate"),
]
values: dict[str, dict[str, float]] = {}
for seed in seeds:
    row = {}
    for model, subset, metric in columns:
        metrics = json.load(open(f"{out}/seed-{seed}/eval-{model}/metrics.json"))["metrics"]
        (m,) = [m for m in metrics if m["judge"] == "refusal" and m["group"] == "all"
                and m["subset"] == subset and m["metric"] == metric]
        row[f"{model} {subset} {metric}"] = 100 * m["value"]
    values[seed] = row
keys = list(next(iter(values.values())))
print("| seed | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for seed, row in values.items():
    print(f"| {seed} | " + " | ".join(f"{row[k]:.1f}" for k in keys) + " |")
summary = {}
for k in keys:
    xs = [values[s][k] for s in seeds]
    summary[k] = {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                  "min": min(xs), "max": max(xs), "per_seed": dict(zip(seeds, xs))}
print("| mean ± sd [min, max] | " + " | ".join(
    f"{summary[k]['mean']:.1f} ± {summary[k]['sd']:.1f} [{summary[k]['min']:.1f}, {summary[k]['max']:.1f}]"
    for k in keys) + " |")
json.dump({"seeds": seeds, "unit": "percent", "metrics": summary}, open(f"{out}/summary.json", "w"), indent=2)
PY
