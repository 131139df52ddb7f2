#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (issue 11): a burst of Rep-MedSAM distillation from
# LiteMedSAM, targets of augmented views computed on the GPU batch by batch. See
# export/repmedsam_export/train/device.py. Before: `python -m repmedsam_export.train.device pack` here.
#   device run: command "bash export/train_on_device.sh 7", carry [".devpack"], timeout_s 600
# MINUTES of training (then one save and the float16 encoder into $OUT); extra arguments go to `train distill`
# (a CPU smoke test: `bash export/train_on_device.sh 1 --device cpu -b 2 --max-steps 2 --workers 0`).
set -euo pipefail
minutes=${1:-7}
shift || true
out=${OUT:-/tmp/devout}
state=${DEVSTATE:-/tmp/devstate}  # kept while the machine stays warm: a second call resumes it
mkdir -p "$out"
export PYTHONPATH="$PWD/python:$PWD/export${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
python3 -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m repmedsam_export.train distill --data .devpack/data.npz \
  --teacher .devpack/teacher_encoder_f16.pth --init .devpack/teacher_encoder_f16.pth --views 1 \
  --teacher-embeddings "$state/no-stored-targets" --state "$state" --device cuda -b 64 --lr 8e-4 \
  --epochs 1000 --epoch-size 8192 --workers 12 --log-every 20 --save-minutes 2 --max-minutes "$minutes" \
  "$@" 2>&1 | tee "$out/train.log"
python3 -m repmedsam_export.train.device finish "$state" -o "$out" --latest
