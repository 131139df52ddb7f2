"""The exported OpenVINO model folder against the golden official tensors (INFERENCE_PRECISION_HINT=f32)."""

import json

import numpy as np
import openvino as ov
import pytest
import torch

from repmedsam_export.checkpoint import file_sha256, load_state_dict
from repmedsam_export.to_ir import export_model
from repmedsam_ov.errors import ModelError

from ..conftest import GOLDEN, GOLDEN_CKPT, SHARED

TOL = 1e-4
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN / "modules.npz"))


@pytest.fixture(scope="module")
def compiled(golden_model_dir):
    core = ov.Core()
    return {name: core.compile_model(golden_model_dir / f"{name}.xml", "CPU", F32) for name in ("encoder", "decoder")}


def decode(compiled, embedding, boxes):
    out = compiled["decoder"]({"embedding": embedding, "boxes": np.asarray(boxes, np.float32)})
    return out["low_res_logits"], out["iou"]


def test_encoder_matches_golden_embedding(compiled, golden):
    embedding = compiled["encoder"]({"image": golden["image_256"][None]})["embedding"]
    assert embedding.shape == (1, 256, 64, 64)
    assert np.abs(embedding[0] - golden["embedding"]).max() <= TOL


def test_encoder_batch_is_dynamic(compiled, golden):
    batch = np.stack([golden["image_256"], golden["image_256"][:, ::-1].copy()])
    embedding = compiled["encoder"]({"image": batch})["embedding"]
    assert embedding.shape == (2, 256, 64, 64)
    assert np.abs(embedding[0] - golden["embedding"]).max() <= TOL


def test_decoder_matches_golden_batched_and_one_by_one(compiled, golden):
    embedding = golden["embedding"][None]
    logits, iou = decode(compiled, embedding, golden["boxes_256"])
    assert logits.shape == (4, 256, 256) and iou.shape == (4,)
    assert np.abs(logits - golden["low_res_logits"]).max() <= TOL
    assert np.abs(iou - golden["iou"]).max() <= TOL
    for i, box in enumerate(golden["boxes_256"]):
        one_logits, one_iou = decode(compiled, embedding, box[None])
        assert np.abs(one_logits[0] - golden["low_res_logits"][i]).max() <= TOL
        assert np.abs(one_iou[0] - golden["iou"][i]).max() <= TOL


@pytest.mark.parametrize("count", [1, 7, 64])
def test_dynamic_box_counts_match_single_calls(compiled, golden, count):
    rng = np.random.default_rng(count)
    lo = rng.integers(0, 200, (count, 2))
    boxes = np.concatenate([lo, lo + rng.integers(1, 56, (count, 2))], axis=1)
    embedding = golden["embedding"][None]
    logits, iou = decode(compiled, embedding, boxes)
    assert logits.shape == (count, 256, 256)
    for i in range(count):
        one_logits, one_iou = decode(compiled, embedding, boxes[i : i + 1])
        assert np.abs(logits[i] - one_logits[0]).max() <= 1e-5
        assert np.abs(iou[i] - one_iou[0]).max() <= 1e-5


def test_model_info(golden_model_dir):
    core = ov.Core()
    for name in ("encoder", "decoder"):
        model = core.read_model(golden_model_dir / f"{name}.xml")
        info = {k: model.get_rt_info(["model_info", k]).astype(str) for k in
                ("model_type", "format_version", "image_size", "embedding_shape", "weight_precision", "int8",
                 "checkpoint_sha256")}
        assert info == {"model_type": "rep_medsam", "format_version": "1", "image_size": "256",
                        "embedding_shape": "256,64,64", "weight_precision": "f32", "int8": "false",
                        "checkpoint_sha256": file_sha256(GOLDEN_CKPT)}
    assert {p.name for p in golden_model_dir.iterdir()} == {"encoder.xml", "encoder.bin", "decoder.xml", "decoder.bin"}


def test_bad_checkpoints_give_one_line_errors_and_no_folder(tmp_path):
    state = load_state_dict(GOLDEN_CKPT)
    missing = dict(state)
    del missing["image_encoder.neck.0.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    torch.save(dict(state, **{"prompt_encoder.no_mask_embed.weight": torch.zeros(1, 128)}), tmp_path / "shape.pth")
    (tmp_path / "text.pth").write_text("hello")
    for name, pattern in [("missing.pth", r"missing\.pth: not a Rep-MedSAM checkpoint: 1 missing keys: image_encoder\.neck\.0\.weight"),
                          ("shape.pth", r"shape\.pth: .*no_mask_embed\.weight \(1, 128\) != \(1, 256\)"),
                          ("text.pth", r"text\.pth: not a PyTorch checkpoint")]:
        with pytest.raises(ModelError, match=pattern) as err:
            export_model(tmp_path / name, tmp_path / "model")
        assert "\n" not in str(err.value)
    assert not (tmp_path / "model").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    with pytest.raises(ModelError, match=r"file/model: cannot create the model folder"):
        export_model(GOLDEN_CKPT, blocker / "model")


def test_int8_refuses_too_few_samples(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((SHARED / "data" / "eval" / "imgs").glob("2DBox_US_*.npz"))[:3]:
        (calib / p.name).symlink_to(p)
    with pytest.raises(ModelError, match=r"only 3 calibration samples .* int8 needs at least 16"):
        export_model(GOLDEN_CKPT, tmp_path / "model", int8=True, calib=[calib])
    assert not (tmp_path / "model").exists()


def test_int8_export_writes_model_and_report(tmp_path, golden, caplog):
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((SHARED / "data" / "eval" / "imgs").glob("2DBox_*.npz"))[::2][:20]:
        (calib / p.name).symlink_to(p)
    out = export_model(GOLDEN_CKPT, tmp_path / "model", int8=True, calib=[calib])
    report = json.loads((out / "quantization_report.json").read_text())
    assert report["samples_used"] == 16 and len(report["held_out_cases"]) == 4
    assert 0.0 <= report["dice_int8_vs_f32"]["min"] <= report["dice_int8_vs_f32"]["mean"] <= 1.0
    assert report["default_encoder"] in ("encoder.xml", "encoder_int8.xml")
    assert "only 16 calibration samples" in caplog.text
    model = ov.Core().read_model(out / "encoder_int8.xml")
    assert model.get_rt_info(["model_info", "int8"]).astype(str) == "true"
    assert model.get_rt_info(["model_info", "int8_accuracy_ok"]).astype(str) == str(report["accuracy_ok"]).lower()
    # the random golden weights are no test of int8 accuracy, but the graph must still be the same model
    compiled = ov.Core().compile_model(model, "CPU", F32)
    embedding = compiled({"image": golden["image_256"][None]})["embedding"][0]
    cosine = float((embedding * golden["embedding"]).sum() / np.linalg.norm(embedding) / np.linalg.norm(golden["embedding"]))
    assert cosine > 0.9
