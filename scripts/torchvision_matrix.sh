#!/usr/bin/env bash
# The architecture matrix WITH torchvision, on a CPU-only development machine (not part of `make test`):
#   scripts/torchvision_matrix.sh [WORK_DIR]
# 1. installs the registry's torchvision 0.28.0 (7.7 MB, no dependencies) into WORK_DIR/site, outside
#    the venv, and makes it importable beside the CPU torch 2.13.0 by defining the two op schemas
#    (torchvision::nms, qnms) whose C++ kernels it cannot load (WORK_DIR/shim/sitecustomize.py). This is
#    a test device only: it leaves torchvision's C++ ops unavailable. Never ship it;
# 2. runs tests/test_architectures.py with torchvision (Mistral 3 and Llama 4 are built and checked; the
#    video-declaring processors load through AutoProcessor unchanged);
# 3. compares the processor outputs of the video-less PIL path (no torchvision) with AutoProcessor's
#    (torchvision) on the same images, for folders as built and as re-saved without torchvision.
set -euo pipefail
work=${1:-$(mktemp -d)}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$work/site" "$work/shim" "$work/builds"
"$py" -m pip install -q --no-deps --target "$work/site" torchvision==0.28.0
cat >"$work/shim/sitecustomize.py" <<'EOF'
import torch

_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
EOF
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHONPATH="$work/shim:$work/site" "$py" -m pytest -q tests/test_architectures.py -p no:cacheprovider

cat >"$work/parity.py" <<'EOF'
import sys
from pathlib import Path

import torch
from PIL import Image

from vlguard.models.loading import detect_kind, load_processor, save_processor, torchvision_available
from vlguard.models.tiny_zoo import TINY_ARCHITECTURES

root, mode = Path(sys.argv[1]), sys.argv[2]
names = ["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "smolvlm", "internvl", "llava-onevision"]
images = [[Image.new("RGB", (40 + 13 * i, 30 + 7 * i), (30 * i, 100, 200))] for i in range(3)]
for name in names:
    built, saved = root / name, root / f"{name}-saved"
    if mode == "build":
        TINY_ARCHITECTURES[name].build(built, 0)
        save_processor(load_processor(str(built), detect_kind(str(built))), saved, str(built))
        continue
    for folder in (built, saved):
        processor = load_processor(str(folder), detect_kind(str(built)), model_config=str(built))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
        text = [processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)] * 3
        batch = processor(text=text, images=images, padding=True, return_tensors="pt")
        out = root / f"{folder.name}.{mode}.pt"
        torch.save(dict(batch), out)
        if mode == "torchvision":
            assert torchvision_available()
            plain = torch.load(root / f"{folder.name}.plain.pt")
            for key, value in plain.items():
                other = batch[key]
                same = torch.allclose(value, other, atol=1e-6) if value.is_floating_point() else torch.equal(value, other)
                assert same, f"{folder.name}: {key} differs"
            print(f"{folder.name}: {type(processor).__name__} outputs equal with and without torchvision")
EOF
"$py" "$work/parity.py" "$work/builds" build
"$py" "$work/parity.py" "$work/builds" plain
PYTHONPATH="$work/shim:$work/site" "$py" "$work/parity.py" "$work/builds" torchvision
