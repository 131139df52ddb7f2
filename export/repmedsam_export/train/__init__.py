"""Training Rep-MedSAM on CPU (or CUDA, or several processes under torchrun): the paper's stages.

- `pipeline`: the whole model, Dice + BCE + IoU-regression loss, flips;
- `finetune`: the same from a pipeline result, lower rate, colour jitter;
- `distill`: the image encoder alone, MSE to teacher embeddings stored by `embed-teacher` (no teacher is
  bundled: it needs a SAM-layout ViT checkpoint such as MedSAM's).

Python use: `Trainer(TrainConfig(stage="pipeline", data=..., state=...)).run()`. CLI: `repmedsam-ov train
ACTION ...` or `python -m repmedsam_export.train ACTION ...` (the same parser; use the latter with
`torchrun --nproc_per_node=N -m repmedsam_export.train ...`). Imports torch; never imported by
`repmedsam_ov` except lazily by its `train` command.
"""

from .config import STAGES, TrainConfig
from .loop import Trainer

__all__ = ["STAGES", "TrainConfig", "Trainer"]
