#!/usr/bin/env bash
# Every GPU user path once, on CUDA, PyTorch backend (BENCHMARKS.md, "GPU check"): SAM segmentation through the
# real checkpoint path (a random-weights checkpoint made here), classify train / evaluate / predict / explain, an
# ensemble, and `naturalize realism` (real against real: its AUC should be near 0.5).
#   bash benchmarks/gpu_paths.sh TREE [OUT]
# TREE: a plain tree of class folders of real PBC images (>= 40 per class); OUT: logs and a few result files
# ($OUT or bench-out/gpu-paths: all.log, bank_files.txt, predict.csv, scorecam.png, realism.json). SAM_LIMIT: images
# segmented (default 22). Run from the repository root; the package need not be installed.
set -u
tree=${1:?usage: gpu_paths.sh TREE [OUT]}
out=${2:-${OUT:-bench-out/gpu-paths}}
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=${KERAS_BACKEND:-torch} PYTHONUNBUFFERED=1
nat() { python3 -c "from naturalize.cli import main; main()" "$@"; }
cls() { python3 -c "from classify.cli import main; main()" "$@"; }
step() {  # step NAME COMMAND...: run it, append its output to all.log, print its exit status, seconds, last lines
  local name=$1 start=$SECONDS
  shift
  "$@" > "$work/$name.log" 2>&1
  local rc=$?
  { echo "== $name rc=$rc $((SECONDS - start)) s"; grep -v "it/s\]\|img/s\]\|s/it\]" "$work/$name.log"; } >> "$out/all.log"
  echo "== $name rc=$rc $((SECONDS - start)) s"
  grep -v "it/s\]\|img/s\]\|s/it\]" "$work/$name.log" | tail -6
}
python3 -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
step sam_ckpt python3 -c "import torch; from segment_anything import sam_model_registry as r; torch.manual_seed(0); \
torch.save(r['vit_b']().state_dict(), '$work/sam_vit_b.pth')"
step segment_sam nat segment "$tree" --out "$work/bank" --backend sam --checkpoint "$work/sam_vit_b.pth" \
  --model-type vit_b --device cuda --limit "${SAM_LIMIT:-22}" --no-progress
ls "$work/bank" > "$out/bank_files.txt" 2>&1
step train cls train --dataset "$tree" --model custom_cnn --weights none --epochs 3 --image-size 128 \
  --batch-size 64 --out "$work/run"
step evaluate cls evaluate "$work/run" --split val
step predict cls predict "$work/run" "$tree/PMY" "$tree/MY" --out "$out/predict.csv"
mkdir -p "$work/few" && for c in PMY BNE LY; do cp "$(ls -d "$tree/$c"/* | head -1)" "$work/few/"; done
step explain cls explain "$work/run" "$work/few" --out "$work/cam"
ls "$work/cam" >> "$out/all.log"; cp "$(ls -d "$work/cam"/*.png | head -1)" "$out/scorecam.png" 2>/dev/null
step ensemble cls train --dataset "$tree" --model ensemble_cbam --weights none --epochs 1 --image-size 128 \
  --batch-size 32 --out "$work/ens"
mkdir -p "$work/a/PMY" "$work/b/PMY"
ls -d "$tree/PMY"/* | awk -v a="$work/a/PMY" -v b="$work/b/PMY" '{print $0, (NR % 2 ? a : b)}' | \
  while read -r f d; do cp "$f" "$d/"; done
step realism nat realism --real "$work/a" --synthetic "$work/b" --out "$work/realism" --seeds 2 --epochs 10 \
  --no-progress
cp "$work/realism/realism.json" "$out/" 2>/dev/null
rm -rf "$work"
