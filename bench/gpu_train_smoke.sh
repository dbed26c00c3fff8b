#!/usr/bin/env bash
# GPU training checks of docs/benchmarks.md ("Training on one GPU"), one command, under 10 minutes on
# one H100/H200:
#   bench/gpu_train_smoke.sh OUT_DIR
# 1. LoRA under bf16 autocast vs fp32, through the real trainer (`vlguard train`, tiny:small VLM and
#    the tiny-lm text LM, 30 steps each), side by side in one run: steps/s from each run's
#    vlguard_train.json, and the final losses;
# 2. the 7B-shaped LoRA and full training step (bench/train_throughput.py --gpu-7b);
# 3. smoke tests of the shipped multi-GPU configs on ONE GPU (num_processes 1): DeepSpeed ZeRO-3
#    (skipped with a note when deepspeed is not installed) and FSDP2, full fine-tuning, 4 steps each,
#    checking that a complete model folder is written.
# Every step has its own time limit and log in OUT_DIR; a failing step does not stop the others.
set -uo pipefail
out=${1:?usage: bench/gpu_train_smoke.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VLGUARD_CACHE=$out/cache
vlguard="python3 -m vlguard.cli.main"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.txt"

common="max_steps=30 save_steps=1000 progress=false warmup_ratio=0 global_batch_size=8 per_device_batch_size=8"
for model in tiny:small tiny-lm:small; do
  config=configs/train/tiny-cpu.yaml
  [[ $model == tiny-lm* ]] && config=configs/train/tiny-lm-cpu.yaml
  for bf16 in true false; do
    name="lora-${model%%:*}-bf16-$bf16"
    timeout 150 $vlguard train "$config" "model.name_or_path=$model" "bf16=$bf16" "output_dir=$out/$name" $common \
      >"$out/$name.log" 2>&1 || echo "FAILED: $name (see $out/$name.log)"
  done
done
python3 - "$out" <<'EOF' | tee "$out/lora_bf16.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for model in ("tiny", "tiny-lm"):
    rows = {}
    for bf16 in ("true", "false"):
        f = out / f"lora-{model}-bf16-{bf16}" / "model" / "vlguard_train.json"
        if f.is_file():
            p = json.loads(f.read_text())
            rows[bf16] = (p["global_step"] / p["train_seconds"], p["train_loss"])
    for bf16, (speed, loss) in rows.items():
        print(f"{model}:small LoRA bf16={bf16}: {speed:.1f} steps/s, mean loss {loss:.4f}")
    if len(rows) == 2:
        print(f"{model}:small bf16 autocast speed-up: {rows['true'][0] / rows['false'][0]:.2f}x")
EOF

timeout 170 python3 bench/train_throughput.py --gpu-7b --out "$out/train_gpu7b.json" >"$out/train_gpu7b.log" 2>&1 \
  || echo "FAILED: 7B-shaped step (see $out/train_gpu7b.log)"

smoke="method=full max_steps=4 save_steps=2 progress=false warmup_ratio=0 global_batch_size=4 per_device_batch_size=4 model.name_or_path=tiny:small"
if python3 -c "import deepspeed" 2>/dev/null; then
  timeout 240 accelerate launch --config_file configs/accelerate/zero3.yaml --num_processes 1 \
    -m vlguard.cli.main train configs/train/tiny-cpu.yaml "output_dir=$out/zero3" $smoke >"$out/zero3.log" 2>&1 \
    && test -f "$out/zero3/model/COMPLETE" && echo "ZeRO-3 on one GPU: OK" || echo "FAILED: ZeRO-3 (see $out/zero3.log)"
else
  echo "ZeRO-3: skipped (deepspeed is not installed; pip install deepspeed)" | tee "$out/zero3.log"
fi
timeout 240 accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 \
  -m vlguard.cli.main train configs/train/tiny-cpu.yaml "output_dir=$out/fsdp" $smoke >"$out/fsdp.log" 2>&1 \
  && test -f "$out/fsdp/model/COMPLETE" && echo "FSDP2 on one GPU: OK" || echo "FAILED: FSDP2 (see $out/fsdp.log)"
