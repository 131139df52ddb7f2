"""The torch model against the official spec and golden module tensors (module-level parity)."""

import numpy as np
import pytest
import torch

from repmedsam_export import build_rep_medsam

from ..conftest import GOLDEN, SHARED

SPEC = SHARED / "spec"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN / "modules.npz"))


def test_state_dict_matches_official_names_shapes_and_order():
    rows = [line.split("\t") for line in (SPEC / "state_dict_unfused.tsv").read_text().splitlines()[1:]]
    state = build_rep_medsam().state_dict()
    assert [(k, str(tuple(v.shape))) for k, v in state.items()] == [(r[0], r[1]) for r in rows]


def test_parameter_counts():
    counts = dict(line.split() for line in (SPEC / "param_counts.txt").read_text().splitlines())
    model = build_rep_medsam()
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        assert sum(p.numel() for p in getattr(model, part).parameters()) == int(counts[part])
    assert sum(p.numel() for p in model.parameters()) == int(counts["total"])
    fused = model.fuse().image_encoder
    assert sum(p.numel() for p in fused.parameters()) == int(counts["image_encoder_fused"])


def test_module_trees_match_official():
    model = build_rep_medsam()
    body = str(model).split("\n", 1)[1]  # our class is RepMedSAM, the official one MedSAM_Lite
    assert body.strip() == (SPEC / "module_tree_unfused.txt").read_text().split("\n", 1)[1].strip()
    model.fuse()
    assert str(model.image_encoder).strip() == (SPEC / "module_tree_fused_encoder.txt").read_text().strip()


@torch.no_grad()
def test_unfused_embedding(golden_model, golden):
    emb = golden_model.image_encoder(torch.from_numpy(golden["image_256"])[None])[0].numpy()
    assert np.abs(emb - golden["embedding"]).max() <= TOL


@torch.no_grad()
def test_fused_embedding(golden_model_fused, golden):
    emb = golden_model_fused.image_encoder(torch.from_numpy(golden["image_256"])[None])[0].numpy()
    assert np.abs(emb - golden["embedding_fused"]).max() <= TOL
    assert np.abs(emb - golden["embedding"]).max() <= TOL


@torch.no_grad()
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_decoder_logits_and_iou(golden_model, golden, batched):
    emb = torch.from_numpy(golden["embedding"])[None]
    boxes = torch.from_numpy(golden["boxes_256"]).float()
    if batched:
        logits, iou = golden_model.decode(emb, boxes)
    else:
        outs = [golden_model.decode(emb, b[None, None]) for b in boxes]
        logits, iou = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
    assert logits.shape == (4, 1, 256, 256) and iou.shape == (4, 1)
    assert np.abs(logits[:, 0].numpy() - golden["low_res_logits"]).max() <= TOL
    assert np.abs(iou[:, 0].numpy() - golden["iou"]).max() <= TOL
