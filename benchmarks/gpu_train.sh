#!/usr/bin/env bash
# `classify train` end to end on a GPU machine, three models, PyTorch backend (BENCHMARKS.md, "GPU check").
#   bash benchmarks/gpu_train.sh TREE [OUT]
# TREE: a plain tree of class folders (e.g. 150 real PBC images per class); OUT: where the logs go ($OUT or
# bench-out/gpu-train). Each model's log ends with its history.csv (seconds and training images/s per epoch).
# Run from the repository root; the package need not be installed (carried wheels on PYTHONPATH will do).
set -u
tree=${1:?usage: gpu_train.sh TREE [OUT]}
out=${2:-${OUT:-bench-out/gpu-train}}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=${KERAS_BACKEND:-torch} PYTHONUNBUFFERED=1
for spec in "efficientnetv2b0 5" "densenet169 4" "custom_cnn 6"; do
  set -- $spec
  run=$(mktemp -d)
  start=$(date +%s)
  timeout 170 python3 -c "from classify.cli import main; main()" train --dataset "$tree" --model "$1" \
    --weights none --epochs "$2" --image-size 224 --batch-size 64 --out "$run/run" > "$out/$1.log" 2>&1
  echo "rc $? wall $(( $(date +%s) - start )) s" >> "$out/$1.log"
  { echo "--- history.csv"; cat "$run/run/history.csv"; } >> "$out/$1.log"
  rm -rf "$run"
  grep -v "img/s\]" "$out/$1.log" | tail -12
done
