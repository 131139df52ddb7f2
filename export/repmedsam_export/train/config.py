"""Settings of one training run (`TrainConfig`) and the per-stage defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from repmedsam_ov.errors import UsageError

__all__ = ["STAGES", "TrainConfig", "DEFAULT_LR"]

STAGES = ("pipeline", "finetune", "distill")

# pipeline: LiteMedSAM's AdamW rate; finetune: 5x lower; distill: encoder alone against fixed targets.
DEFAULT_LR = {"pipeline": 5e-5, "finetune": 1e-5, "distill": 1e-4}

# settings that fix the sample order: a resume with different values would not continue the same run
RESUME_IDENTITY = ("stage", "arch", "seed", "subset", "balance", "epoch_size", "box_shift", "box_shrink",
                   "neighbour_box", "views", "held_out", "group_shares")


@dataclass
class TrainConfig:
    """One run. Paths are strings so the config pickles into the state file as plain values.

    data: the training folder (manifest.csv) or a cache .npz; state: the state folder (None: the default
    under ~/.cache/repmedsam-ov/train/<stage>); init: checkpoint to start from; val: eval folder with
    imgs/ and gts/ (None: no segmentation validation, best = lowest epoch loss).
    """

    stage: str = "pipeline"
    data: str = ""
    state: str | None = None
    init: str | None = None
    arch: str = "rep_medsam"
    epochs: int = 100
    batch_size: int = 4
    lr: float | None = None
    weight_decay: float = 0.01
    plateau_patience: int = 5
    plateau_factor: float = 0.9
    precision: str = "auto"  # auto | f32 | bf16
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None
    max_steps: int | None = None
    max_minutes: float | None = None
    subset: int | None = None
    balance: float = 0.5
    group_shares: dict[str, float] | None = None  # {"2D"|modality: share of samples}, e.g. CT and MR volumes
    epoch_size: int | None = None
    box_shift: int = 5
    box_shrink: int = 0  # boxes may also be tighter than the mask: masks that grow past a tight box (3D)
    neighbour_box: float = 0.0  # share of 3D slices prompted by a neighbour slice's box, as in propagation
    flips: bool = True
    colour_jitter: bool | None = None  # None: on for finetune only
    val: str | None = None
    val_cases: int | None = None
    val_every: int = 1
    save_minutes: float = 5.0
    log_every: int = 10
    workers: int = 0
    seed: int = 0
    cache: bool = False
    teacher_embeddings: str | None = None
    teacher: str | None = None  # LiteMedSAM checkpoint or model folder: distill's targets, or teacher_masks
    teacher_masks: float = 0.0  # pipeline/finetune with teacher: weight of the BCE to the teacher's masks
    views: float = 0.5  # distill with a teacher: share of samples that are augmented views targeted on the fly
    crop: int = 0  # distill: train on crop×crop input crops (0: whole images); may change between resumes
    fresh: bool = False
    held_out: list[str] = dataclasses.field(default_factory=list)  # set by the trainer: --val's training cases

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r}: expected one of {', '.join(STAGES)}")
        if self.teacher_masks and (self.stage == "distill" or not self.teacher):
            raise UsageError(f"{self.stage}: --teacher-masks needs --teacher and the pipeline or finetune stage.")
        if not 0.0 <= self.neighbour_box <= 1.0:
            raise UsageError(f"--neighbour-box {self.neighbour_box}: expected a share from 0 to 1.")
        if self.group_shares and (any(v < 0 for v in self.group_shares.values())
                                  or sum(self.group_shares.values()) > 1 + 1e-9):
            raise UsageError(f"--group-shares {self.group_shares}: expected shares from 0 summing to at most 1.")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.stage]
        if self.colour_jitter is None:
            self.colour_jitter = self.stage == "finetune"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def state_dir(self) -> Path:
        from .state import default_state_dir

        return Path(self.state).expanduser() if self.state else default_state_dir(self.stage)
