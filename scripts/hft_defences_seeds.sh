#!/usr/bin/env bash
# Every defence of `vlguard hft` on the tiny CPU recipe over several seeds, and the papers' table of them
# (docs/hft.md, "Every defence on the tiny recipe").
#
#   scripts/hft_defences_seeds.sh [OUT] [SEEDS...]
#
# OUT: parent folder (default runs/hft-defences-seeds), one OUT/seed-<s> folder per seed; SEEDS default to
# 3 4 5 (held out: seeds 0-2 were used to choose tiny-cpu.yaml's settings; no setting of a defence was
# tuned on the tiny model at all). Each sweep is configs/hft/defences-tiny-cpu.yaml with the harmful ratios
# RATIOS (default "[0.0, 0.1]", so that one seed takes about 20-27 minutes on 2 shared cores). Finished stages are
# skipped on a rerun. Per seed it records the wall time and the load average before and after (the
# machine may be shared), then writes the report of all seeds to OUT/report (HTML, markdown) and
# OUT/report-csv/hft_table.csv (the papers' layout: mean ± sd over the seeds).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/hft-defences-seeds}
shift $(( $# > 1 ? 1 : $# ))
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(3 4 5)
RATIOS=${RATIOS:-"[0.0, 0.1]"}
VLGUARD=${VLGUARD:-.venv/bin/vlguard}
mkdir -p "$OUT"

folders=()
for seed in "${SEEDS[@]}"; do
  d="$OUT/seed-$seed"
  folders+=("$d")
  echo "== seed $seed"
  if [ ! -f "$d/summary.json" ]; then
    start=$(date +%s); load_start=$(cut -d' ' -f1 /proc/loadavg)
    "$VLGUARD" hft configs/hft/defences-tiny-cpu.yaml "output_dir=$d" "seed=$seed" \
      "attack.harmful_ratios=$RATIOS" --no-progress > "$OUT/seed-$seed.log" 2>&1 \
      || { echo "the sweep failed: see $OUT/seed-$seed.log (a rerun resumes it)" >&2; exit 1; }
    printf '{"wall_s": %d, "load_start": %s, "load_end": %s}\n' "$(( $(date +%s) - start ))" \
      "$load_start" "$(cut -d' ' -f1 /proc/loadavg)" > "$d/timing.json"
  fi
  cat "$d/timing.json"
done

"$VLGUARD" report "${folders[@]}" --out "$OUT/report"
"$VLGUARD" report "${folders[@]}" --out "$OUT/report-csv" --format csv
cat "$OUT/report-csv/hft_table.csv"
