"""The training loop shared by the three stages: pipeline (whole model), finetune (whole model, lower rate,
colour jitter) and distill (image encoder only, MSE to stored teacher embeddings).

One process or several under `torchrun` (DDP; gloo on CPU, NCCL on CUDA). Every `save_minutes`, at the end
of each epoch, at the step/time budget and on Ctrl-C, rank 0 writes the full state to the state folder
(see state.py); the next run with the same folder continues from the next sample as if never stopped.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from repmedsam_ov.errors import InputError, ModelError, UsageError

from ..checkpoint import detect_arch, load_state_dict
from .arch import build_model
from .config import RESUME_IDENTITY, TrainConfig
from .data import CacheSource, FolderSource, build_cache, open_source, select_subset
from .losses import distillation_loss, segmentation_loss, teacher_mask_loss
from .samples import Augment, BalancedOrder, EmbeddingSamples, SegmentationSamples, batch_keys
from .state import JsonLog, default_state_dir, load_state, rng_state, save_atomic, set_rng_state

__all__ = ["Trainer", "resolve_device", "resolve_precision"]

# Kept so official checkpoints load, never used by box prompts: frozen (DDP requires every trainable
# parameter to get a gradient, and weight decay would otherwise shrink them for nothing).
UNUSED_BY_BOXES = ("prompt_encoder.point_embeddings.0.", "prompt_encoder.point_embeddings.1.",
                   "prompt_encoder.not_a_point_embed.", "prompt_encoder.mask_downscaling.")

# embedding cells left out of the loss at each side of a crop (16 input pixels): the crop's edge hides context
CROP_MARGIN = 4

log = logging.getLogger("repmedsam_ov")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device visible to this torch build.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on CUDA with bf16 support and on CPUs with native bf16 (AMX / AVX512-BF16); f32 elsewhere,
    where bf16 autocast measured slower (AVX2 only: bf16 is emulated)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "f32"
    try:
        from repmedsam_ov._core import native_bf16_units  # the runtime's own probe: one rule for both sides
    except ImportError:  # a bare source tree (the device script's copy) has no compiled runtime to probe with
        log.warning("--precision auto: the compiled runtime is not importable here to probe the CPU; f32")
        return "f32"
    return "bf16" if native_bf16_units() else "f32"


# the neck layers Rep-MedSAM and LiteMedSAM share in shape: LayerNorm, 3x3 conv, LayerNorm
_SHARED_NECK = ("image_encoder.neck.1.", "image_encoder.neck.2.", "image_encoder.neck.3.")


class Trainer:
    """Builds everything from a TrainConfig; `run()` trains until the epochs or the budget run out.

    model: optional pre-built network (tests); default `build_model(cfg.arch, cfg.seed)`.
    """

    def __init__(self, cfg: TrainConfig, model=None) -> None:
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.rank:  # one voice: progress and summaries come from rank 0
            log.setLevel(max(log.level, logging.WARNING))
        self.device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.dir = cfg.state_dir()
        if self.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            if cfg.fresh:
                (self.dir / "log.jsonl").unlink(missing_ok=True)
        self.log = JsonLog(self.dir / "log.jsonl" if self.rank == 0 else None)

        self.source = self._open_data()
        self.items = self._without_val_cases(select_subset(self.source.items, cfg.subset, cfg.seed))
        if not self.items:
            raise InputError(f"{cfg.data}: no images with objects to train on.")
        self.order = BalancedOrder(self.items, cfg.balance, cfg.seed, cfg.epoch_size, cfg.group_shares)
        if self.order.epoch_size < cfg.batch_size * self.world:
            raise UsageError(f"--epoch-size {self.order.epoch_size}: smaller than one step "
                             f"(batch size {cfg.batch_size} x {self.world} rank(s)).")

        self.model = (model if model is not None else build_model(cfg.arch, cfg.seed)).to(self.device).train()
        # NHWC convolutions: a RepViT step took 0.66 s/sample instead of 1.1 on a 2-core AMX CPU (bf16)
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self._load_init()
        self.distill = cfg.stage == "distill"
        self.net = self.model.image_encoder if self.distill else self.model
        for name, p in self.model.named_parameters():
            trained = name.startswith("image_encoder.") if self.distill else not name.startswith(UNUSED_BY_BOXES)
            p.requires_grad_(trained)
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, mode="min", factor=cfg.plateau_factor,
                                                                patience=cfg.plateau_patience)
        self.epoch, self.consumed, self.step = 0, 0, 0
        self.epoch_loss_sum, self.epoch_steps = 0.0, 0
        self.best: float | None = None
        self.batch_teacher = None  # set by _dataset when a torch teacher targets whole batches
        self._resume()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        else:
            self.ddp = self.net
        self.dataset = self._dataset()
        self.mask_teacher = None
        if cfg.teacher_masks and not self.distill:
            from .ov_teacher import open_mask_teacher

            self.mask_teacher = open_mask_teacher(cfg.teacher, cfg.threads)

    # ---- setup -------------------------------------------------------------------------------------
    def _open_data(self):
        cfg = self.cfg
        if not cfg.cache or Path(cfg.data).is_file():
            return open_source(cfg.data)
        path = self.dir / "data-cache.npz"
        if self.rank == 0 and not path.is_file():
            folder = open_source(cfg.data)
            if not isinstance(folder, FolderSource):
                raise UsageError(f"{cfg.data}: --cache needs the training folder, or give the cache file as --data.")
            log.info("building the data cache %s (%d images)", path, len(folder.items))
            build_cache(folder, path)
        if self.world > 1:
            dist.barrier()
        return CacheSource(path)

    def _without_val_cases(self, items: list) -> list:
        """Items minus the cases --val scores (a validation split of the training data: val_split.py), so
        that no checkpoint is chosen on what it trained on; their names go into the run's identity."""
        if not self.cfg.val:
            return items
        val_names = {p.stem for p in (Path(self.cfg.val) / "imgs").glob("*.npz")}
        self.cfg.held_out = sorted({it.name for it in items} & val_names)
        if self.cfg.held_out:
            log.info("%d validation cases left out of training (%s)", len(self.cfg.held_out), self.cfg.val)
        return [it for it in items if it.name not in val_names]

    def _load_init(self) -> None:
        cfg = self.cfg
        init = cfg.init
        if init is None and cfg.stage == "finetune":
            guess = (Path(cfg.state).expanduser().parent if cfg.state else default_state_dir("x").parent)
            guess = guess / "pipeline" / "best.pth"
            if not guess.is_file():
                raise UsageError(f"finetune: no --init given and no pipeline result at {guess}. "
                                 "Pass --init CHECKPOINT (a pipeline best.pth or rep_medsam.pth).")
            init = str(guess)
        if init is None:
            return
        state = load_state_dict(init)
        if cfg.arch == "rep_medsam" and detect_arch(state) == "litemedsam":
            # the teacher's prompt encoder and mask decoder fit Rep-MedSAM exactly; of its encoder, the neck after
            # the first 1x1 conv does too: its last LayerNorm sets the embedding's scale (weights ~0.14, not the
            # fresh 1.0, whose 6x too large output the student otherwise spends thousands of steps shrinking)
            own = self.model.state_dict()
            state = {k: v for k, v in state.items() if not k.startswith("image_encoder.")
                     or (k.startswith(_SHARED_NECK) and k in own and v.shape == own[k].shape)}
            state.update({k: v for k, v in own.items() if k not in state})
            log.info("prompt encoder, mask decoder and neck (after its first conv) from LiteMedSAM %s", init)
        try:
            self.model.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as e:
            raise ModelError(f"{init}: does not fit the {cfg.arch} model ({str(e).splitlines()[0][:300]}).") from None
        log.info("initialised from %s", init)

    def _dataset(self):
        cfg = self.cfg
        if self.distill:
            from .teacher import EmbeddingStore

            folder = Path(cfg.teacher_embeddings or (self.dir.parent / "teacher"))
            teacher = None
            if cfg.teacher:
                from .ov_teacher import open_teacher

                teacher = open_teacher(cfg.teacher, cfg.threads, self.device.type)
            if teacher is not None and not (folder / "index.json").is_file():
                if cfg.views < 1:  # the views share is part of the run's identity: never switched silently
                    raise UsageError(f"{folder}: no stored teacher embeddings; pass --views 1 to train on "
                                     "on-the-fly targets only, or run embed-teacher first.")
                if hasattr(teacher, "embed_tensor") and not cfg.crop:
                    self.batch_teacher = teacher  # targets per batch on the device (train_step)
                    return EmbeddingSamples(self.source, self.items, seed=cfg.seed, deferred=True)
                store = None  # EmbeddingSamples then makes every sample an on-the-fly view
            else:
                store = EmbeddingStore(folder)
            return EmbeddingSamples(self.source, self.items, store, teacher, cfg.views, cfg.seed, cfg.crop)
        return SegmentationSamples(self.source, self.items, Augment(cfg.flips, cfg.colour_jitter), cfg.seed,
                                   cfg.box_shift, cfg.box_shrink, cfg.neighbour_box)

    def _resume(self) -> None:
        path = self.dir / "state.pt"
        if self.cfg.fresh or not path.is_file():
            return
        state = load_state(path)
        # settings added after the state was saved read as their defaults
        old = {**TrainConfig(stage=self.cfg.stage).as_dict(), **state["config"]}
        changed = [k for k in RESUME_IDENTITY if old[k] != getattr(self.cfg, k)]
        if changed:
            raise UsageError(f"{path}: saved by a run with other {', '.join(changed)} "
                             f"({', '.join(f'{k}={old[k]!r}' for k in changed)}). Use the same settings "
                             "to resume, or --fresh to start over (the old state is overwritten), or another --state.")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        for k in ("epoch", "consumed", "step", "epoch_loss_sum", "epoch_steps", "best"):
            setattr(self, k, state[k])
        set_rng_state(state["rng"])
        log.info("resuming %s: epoch %d, %d samples into it, step %d", path, self.epoch, self.consumed, self.step)

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"config": self.cfg.as_dict(), "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "epoch": self.epoch, "consumed": self.consumed,
                "step": self.step, "epoch_loss_sum": self.epoch_loss_sum, "epoch_steps": self.epoch_steps,
                "best": self.best, "rng": rng_state()}

    def save(self) -> None:
        if self.rank == 0:
            save_atomic(self.state_dict(), self.dir / "state.pt")
        self._last_save = time.monotonic()

    # ---- steps -------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def train_step(self, batch) -> dict[str, float]:
        image = batch["image"].to(self.device, memory_format=self.memory_format)
        if self.distill:
            target = batch["target"].to(self.device) if "target" in batch else self.batch_teacher.embed_tensor(image)
            with self._autocast():
                embedding = self.ddp(image)
            parts = distillation_loss(embedding, target, CROP_MARGIN if self.cfg.crop else 0)
        else:
            with self._autocast():
                logits, iou = self.ddp(image, batch["box"].to(self.device)[:, None])
            parts = segmentation_loss(logits, iou, batch["mask"].to(self.device))
            if self.mask_teacher is not None:
                teacher = self.mask_teacher.mask_logits(batch["image"].numpy(), batch["box"].numpy())
                kd = teacher_mask_loss(logits, torch.from_numpy(teacher).to(self.device))
                parts["loss"] = parts["loss"] + self.cfg.teacher_masks * kd
                parts["teacher"] = kd.detach()
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        return {k: float(v.detach()) for k, v in parts.items()}

    def _loader(self):
        keys = list(batch_keys(self.order, self.epoch, self.consumed, self.cfg.batch_size, self.rank, self.world))
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=keys, num_workers=self.cfg.workers)

    def run(self) -> dict:
        """Train; returns {"stopped": "done"|"max_steps"|"max_minutes"|"signal", "epoch", "step", "best", ...}."""
        cfg, t0 = self.cfg, time.monotonic()
        self._last_save, steps_here, stopped = t0, 0, "done"
        self._in_step = False
        per_step = cfg.batch_size * self.world
        log.info("%s: %d images from %d sources (shares %s), %s on %s, %d rank(s), state %s", cfg.stage,
                 len(self.items), len(set(i.source for i in self.items)),
                 {k: round(v, 3) for k, v in sorted(self.order.shares(self.items).items())}, self.precision,
                 self.device, self.world, self.dir)
        self._terminated = False
        self._validate_start()
        restore = self._stop_on_sigterm()
        try:
            while self.epoch < cfg.epochs and stopped == "done":
                t_step = time.monotonic()
                for batch in self._loader():
                    self._in_step = True
                    parts = self.train_step(batch)
                    self.step += 1
                    steps_here += 1
                    self.consumed += per_step
                    self.epoch_loss_sum += parts["loss"]
                    self.epoch_steps += 1
                    self._in_step = False
                    now = time.monotonic()
                    if self.step % cfg.log_every == 0 or steps_here <= 2:
                        self._log_step(parts, batch, now - t_step)
                    t_step = now
                    if self.consumed + per_step > self.order.epoch_size:
                        break  # the epoch's last full step
                    stopped = self._budget(steps_here, now - t0)
                    if stopped != "done":
                        break
                    if now - self._last_save >= cfg.save_minutes * 60:
                        self.save()
                if stopped == "done":
                    self._end_epoch()
                    stopped = self._budget(steps_here, time.monotonic() - t0)
        except KeyboardInterrupt:
            if not self._in_step:  # mid-step the optimizer may have half-updated: keep the last save instead
                self.save()
            raise
        finally:
            restore()
        self.save()
        summary = {"stopped": stopped, "epoch": self.epoch, "step": self.step, "best": self.best,
                   "seconds": round(time.monotonic() - t0, 1), "state": str(self.dir)}
        self.log.write(event="stop", **summary)
        return summary

    def _budget(self, steps_here: int, seconds: float) -> str:
        """Why to stop now ("max_steps", "max_minutes", "signal"), or "done" to go on."""
        cfg = self.cfg
        if cfg.max_steps is not None and steps_here >= cfg.max_steps:
            return "max_steps"
        if cfg.max_minutes is not None and seconds >= cfg.max_minutes * 60:
            return "max_minutes"
        return "signal" if self._terminated else "done"

    def _stop_on_sigterm(self):
        """SIGTERM (a session or job scheduler ending the run) finishes the current step, saves and returns,
        instead of losing up to --save-minutes of training. One process only: ranks told at different steps
        would wait on each other. Returns the function that restores the old handler."""
        if self.world > 1 or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_terminated", True))
        return lambda: signal.signal(signal.SIGTERM, previous)

    def _log_step(self, parts, batch, seconds) -> None:
        lr = self.opt.param_groups[0]["lr"]
        self.log.write(event="step", epoch=self.epoch, step=self.step, lr=lr, seconds=round(seconds, 3),
                       items=[int(i) for i in batch["index"]], **{k: round(v, 6) for k, v in parts.items()})
        detail = " ".join(f"{k} {v:.4f}" for k, v in parts.items() if k != "loss")
        log.info("epoch %d step %d  loss %.4f (%s)  lr %.2e  %.1f s/step", self.epoch, self.step, parts["loss"],
                 detail, lr, seconds)

    def _validate(self, record: dict, what: str) -> float:
        """Validation DSC of the model now (rank 0 scores, the others receive it); the result goes into record."""
        score = float("nan")
        if self.rank == 0:
            from .validate import validate

            result = validate(self.model, self.cfg.val, self.cfg.val_cases, self.device)
            record["val"] = result
            score = result["dsc"]
            log.info("%s validation: DSC %.4f%s over %d cases (%s) in %.0f s", what, result["dsc"],
                     f", NSD {result['nsd']:.4f}" if result["nsd"] is not None else "", result["cases"],
                     result["method"], result["seconds"])
        if self.world > 1:
            t = torch.tensor([score], dtype=torch.float64, device=self.device)
            dist.broadcast(t, 0)
            score = float(t)
        return score

    def _validate_start(self) -> None:
        """A new run from a checkpoint scores it first: best.pth is then only written by a model that beats
        where the run started (and `device finish` only commits progress that improved on it)."""
        if self.step or self.best is not None or not self.cfg.val or not self.cfg.init:
            return
        record = {"event": "start", "init": self.cfg.init}
        self.best = self._validate(record, "starting model")
        self.log.write(**record)
        self.save()

    def _end_epoch(self) -> None:
        mean = self.epoch_loss_sum / max(self.epoch_steps, 1)
        if self.world > 1:
            t = torch.tensor([mean], device=self.device)
            dist.all_reduce(t)
            mean = float(t) / self.world
        self.sched.step(mean)
        record = {"event": "epoch", "epoch": self.epoch, "loss": round(mean, 6), "lr": self.opt.param_groups[0]["lr"]}
        # higher is better: validation DSC, else minus the epoch loss
        score = -mean
        validating = bool(self.cfg.val)  # distill too: its decoder is the teacher's, so DSC is meaningful
        if validating and (self.epoch + 1) % self.cfg.val_every and self.epoch + 1 < self.cfg.epochs:
            validating = False  # not this epoch: the best is only updated when validated
            score = None
        if validating:
            score = self._validate(record, f"epoch {self.epoch}")
        if score is not None and (self.best is None or score > self.best):
            self.best = score
            record["best"] = True
            if self.rank == 0:
                save_atomic({"model": self.model.state_dict(), "epoch": self.epoch, "score": score,
                             "stage": self.cfg.stage, "arch": self.cfg.arch}, self.dir / "best.pth")
        log.info("epoch %d done: mean loss %.4f%s", self.epoch, mean, " (best so far)" if record.get("best") else "")
        self.log.write(**record)
        self.epoch += 1
        self.consumed, self.epoch_loss_sum, self.epoch_steps = 0, 0.0, 0
        self.save()
        if self.world > 1:
            dist.barrier()
        if math.isnan(mean):
            raise RuntimeError(f"epoch {self.epoch - 1}: the loss is NaN; lower --lr or use --precision f32.")
