#!/usr/bin/env bash
# The bundled model's training run (issues 11 and 28), resumable on any machine: rerun it every session, from an
# activated environment with the export extra, as `train_bundled.sh [distill|pipeline] [ARGS]` (default
# distill; ARGS go to `train STAGE`, e.g. --max-minutes). It fetches the teacher and builds the data cache when
# they are missing and resumes the stage's state folder when there is one. On a machine without it (sessions may
# get a new one) it starts from what export/progress/STAGE holds: distill from the committed student encoder,
# pipeline from the committed whole model, else from the distillation's best (its state folder here, or the
# committed encoder). Before a session ends, commit the progress if it improved (finish writes nothing otherwise):
#   python -m repmedsam_export.train.device finish "$STATE" -o export/progress/STAGE
set -euo pipefail
cd "$(dirname "$0")/.."
stage=distill
case "${1:-}" in distill|pipeline) stage=$1; shift;; esac
cache=${XDG_CACHE_HOME:-$HOME/.cache}/repmedsam-ov
teacher=$cache/litemedsam/lite_medsam.pth
data=$cache/train/data-cache.npz
distill_state=$cache/train/distill-views

val=$cache/train/val  # the validation split of the training data (val_split.py): never the eval set
[ -f "$teacher" ] || repmedsam-ov train get-teacher
[ -f "$data" ] || repmedsam-ov train build-cache --data ../shared/data/train -o "$data"
[ -d "$val/imgs" ] || repmedsam-ov train make-val --data ../shared/data/train -o "$val"

merged_distill_encoder() {  # the committed student encoder with LiteMedSAM's prompt encoder and mask decoder
  python -m repmedsam_export.train.device merge export/progress/distill/student_encoder_f16.pth -o "$1" >&2
  echo "$1"
}

common=(--data "$data" -b 4 --epochs 400 --epoch-size 2560 --val "$val" --val-every 1 -t 2 --log-every 20)
if [ "$stage" = distill ]; then
  state=${STATE:-$distill_state}
  init=$teacher
  if [ ! -f "$state/state.pt" ] && [ -f export/progress/distill/student_encoder_f16.pth ]; then
    init=$(merged_distill_encoder "$state.from-progress.pth")
  fi
  exec repmedsam-ov train distill --init "$init" --teacher "$teacher" --views 1 --state "$state" --lr 4e-4 \
    "${common[@]}" "$@"
fi
state=${STATE:-$cache/train/pipeline}
if [ -f export/progress/pipeline/model_f16.pth ]; then
  init=export/progress/pipeline/model_f16.pth  # ignored when the state folder resumes
elif [ -f "$distill_state/best.pth" ]; then
  init=$distill_state/best.pth
else
  init=$(merged_distill_encoder "$distill_state.from-progress.pth")
fi
# --box-shrink 3: boxes also tighter than the mask, as 3D propagation makes them (MODEL_CARD, run history);
# --group-shares: CT volumes a fifth of the samples (by source balance alone, 6%), issue 28
exec repmedsam-ov train pipeline --init "$init" --state "$state" --lr 5e-5 --box-shift 5 --box-shrink 3 \
  --group-shares 2D=0.5,CT=0.2,MR=0.3 "${common[@]}" "$@"
