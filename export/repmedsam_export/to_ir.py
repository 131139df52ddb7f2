"""Export a Rep-MedSAM (or LiteMedSAM) checkpoint to an OpenVINO model folder (reparameterized encoder + box
decoder IR). The architecture is read from the checkpoint's keys and recorded as rt_info model_type.

MODEL_DIR holds encoder.xml/.bin (`image` f32 [?,3,256,256] -> `embedding` [?,256,64,64]) and decoder.xml/.bin
(`embedding` [1,256,64,64] + `boxes` [?,4] -> `low_res_logits` [?,256,256], `iou` [?]), each describing itself
in rt_info["model_info"], plus optionally encoder_int8.xml/.bin and quantization_report.json. The folder is
built in a temporary sibling and renamed into place, so a failed export never leaves a half-written MODEL_DIR.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import openvino as ov
import torch

from repmedsam_ov.errors import ModelError

from .checkpoint import file_sha256, load_checkpoint
from .ir_wrappers import BoxDecoder
from .model import IMAGE_SIZE, RepMedSAM

__all__ = ["export_model", "convert_encoder", "convert_decoder", "model_info", "FORMAT_VERSION", "MODEL_TYPE"]

MODEL_TYPE = "rep_medsam"  # LiteMedSAM folders say "litemedsam": the same contract, another encoder
FORMAT_VERSION = "1"
EXPORTER_VERSION = "0.2.0"  # 0.2: token-major decoder upscaling, box-independent attention once per call
log = logging.getLogger("repmedsam_ov")


@contextlib.contextmanager
def _quiet_tracing():
    """OpenVINO converts through torch.jit.trace, which warns that it is deprecated; nothing for users to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*")
        yield


def convert_encoder(model: RepMedSAM) -> ov.Model:
    """The fused encoder as an OpenVINO model with a dynamic batch."""
    encoder = model.image_encoder.eval()
    with torch.no_grad(), _quiet_tracing():
        ov_model = ov.convert_model(encoder, example_input=torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),
                                    input=[([-1, 3, IMAGE_SIZE, IMAGE_SIZE], ov.Type.f32)])
    ov_model.inputs[0].get_tensor().set_names({"image"})
    ov_model.outputs[0].get_tensor().set_names({"embedding"})
    return ov_model


def convert_decoder(model: RepMedSAM) -> ov.Model:
    """Prompt encoder + mask decoder for K boxes on one embedding (K dynamic; traced with K=3, not 1)."""
    decoder = BoxDecoder(model).eval()
    example = (torch.zeros(1, 256, 64, 64), torch.tensor([[1.0, 2, 30, 40], [5, 5, 60, 60], [0, 0, 256, 256]]))
    with torch.no_grad(), _quiet_tracing():
        ov_model = ov.convert_model(decoder, example_input=example, input=[
            ("embedding", [1, 256, 64, 64], ov.Type.f32), ("boxes", [-1, 4], ov.Type.f32)])
    ov_model.outputs[0].get_tensor().set_names({"low_res_logits"})
    ov_model.outputs[1].get_tensor().set_names({"iou"})
    return ov_model


def model_info(checkpoint_sha256: str, weight_precision: str, int8: bool,
               model_type: str = MODEL_TYPE) -> dict[str, str]:
    """What the runtime reads back from rt_info["model_info"] instead of asking the user."""
    return {
        "model_type": model_type,
        "format_version": FORMAT_VERSION,
        "image_size": str(IMAGE_SIZE),
        "embedding_shape": "256,64,64",
        "weight_precision": weight_precision,
        "int8": "true" if int8 else "false",
        "checkpoint_sha256": checkpoint_sha256,
        "exporter_version": f"repmedsam_export {EXPORTER_VERSION}",
    }


def _describe(ov_model: ov.Model, info: dict[str, str]) -> None:
    for key, value in info.items():
        ov_model.set_rt_info(value, ["model_info", key])


def export_model(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, fp16_weights: bool = False,
                 int8: bool = False, calib: list[str | os.PathLike] | None = None, overwrite: bool = True,
                 arch: str | None = None) -> Path:
    """Export `checkpoint` to `out_dir` (see the module docstring). Returns the model folder.

    arch: "rep_medsam" or "litemedsam"; None reads it from the checkpoint.
    fp16_weights halves the files (weights stored as fp16, computed in f32/bf16 at run time).
    int8 adds an NNCF-quantized encoder calibrated on the challenge-format cases in `calib` folders.
    Raises ModelError for a bad checkpoint, bad calibration data or an output folder that cannot be written.
    """
    out_dir = Path(out_dir)
    if int8 and not calib:
        raise ModelError("--int8 needs calibration data: --calib DIR [DIR ...] with challenge-format .npz cases.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir}: exists and is not a folder.")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ModelError(f"{out_dir}: exists and is not empty (pass overwrite=True / --overwrite to replace it).")
    model = load_checkpoint(checkpoint, arch=arch).fuse()
    sha = file_sha256(checkpoint)
    if int8:
        from .quantize import prepare_calibration, quantize_encoder

        prepared = prepare_calibration(calib)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder is an ordinary one
    except OSError as e:
        raise ModelError(f"{out_dir}: cannot create the model folder ({e.strerror or e}).") from None
    try:
        precision = "f16" if fp16_weights else "f32"
        encoder, decoder = convert_encoder(model), convert_decoder(model)
        for ov_model in (encoder, decoder):
            _describe(ov_model, model_info(sha, precision, int8=False, model_type=model.arch))
        ov.save_model(encoder, staging / "encoder.xml", compress_to_fp16=fp16_weights)
        ov.save_model(decoder, staging / "decoder.xml", compress_to_fp16=fp16_weights)
        if int8:
            quantize_encoder(encoder, decoder, prepared, staging, info=model_info(sha, precision, int8=True, model_type=model.arch),
                             compress_to_fp16=fp16_weights)
        _replace_dir(staging, out_dir)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"{out_dir}: cannot write the model folder ({e.strerror or e}).") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s -> %s", checkpoint, out_dir)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing an existing folder only once the new one is complete."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


if __name__ == "__main__":  # used by tests to export in a process of its own: python -m ... CKPT OUT_DIR
    import sys

    export_model(sys.argv[1], sys.argv[2])
