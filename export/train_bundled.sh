#!/usr/bin/env bash
# The bundled model's distillation run (issue 11), resumable on any machine: rerun it every session, from an
# activated environment with the export extra. It fetches the teacher and builds the data cache when they are
# missing, resumes the state folder when there is one, and on a machine without it (sessions may get a new one)
# starts from the student encoder committed in $PROGRESS. Extra arguments go to `train distill` (--max-minutes).
# Before a session ends, commit the progress:
#   python -m repmedsam_export.train.device finish "$STATE" -o export/progress/distill
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/repmedsam-ov
state=${STATE:-$cache/train/distill-views}
progress=${PROGRESS:-export/progress/distill}
teacher=$cache/litemedsam/lite_medsam.pth
data=$cache/train/data-cache.npz

[ -f "$teacher" ] || repmedsam-ov train get-teacher
[ -f "$data" ] || repmedsam-ov train build-cache --data ../shared/data/train -o "$data"
init=$teacher
if [ ! -f "$state/state.pt" ] && [ -f "$progress/student_encoder_f16.pth" ]; then
  init=$state.from-progress.pth
  python -m repmedsam_export.train.device merge "$progress/student_encoder_f16.pth" -o "$init"
fi
exec repmedsam-ov train distill --data "$data" --init "$init" --teacher "$teacher" --views 1 --state "$state" \
  -b 4 --lr 4e-4 --epochs 400 --epoch-size 2560 --val ../shared/data/eval --val-cases 10 --val-every 1 -t 2 \
  --log-every 20 "$@"
