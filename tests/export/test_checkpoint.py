"""Checkpoint loading: official layouts load, wrong files give one clear ModelError naming the file."""

import pytest
import torch

from repmedsam_export import load_checkpoint
from repmedsam_export.checkpoint import load_state_dict
from repmedsam_ov.errors import ModelError

from ..conftest import GOLDEN_CKPT


@pytest.fixture(scope="module")
def state():
    return load_state_dict(GOLDEN_CKPT)


def test_golden_checkpoint_is_fp16_and_loads_as_fp32(state):
    assert {v.dtype for k, v in state.items() if "num_batches" not in k} == {torch.float16}
    model = load_checkpoint(GOLDEN_CKPT)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "training-format"])
def test_fp32_and_wrapped_checkpoints_load(tmp_path, state, wrap):
    fp32 = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"model": fp32, "epoch": 3} if wrap else fp32, path)
    model = load_checkpoint(path)
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(model.state_dict()[key], fp32[key])


def test_missing_key(tmp_path, state):
    broken = dict(state)
    del broken["mask_decoder.iou_token.weight"]
    torch.save(broken, tmp_path / "c.pth")
    with pytest.raises(ModelError, match=r"c\.pth: not a Rep-MedSAM checkpoint: 1 missing keys: mask_decoder\.iou_token\.weight"):
        load_checkpoint(tmp_path / "c.pth")


def test_unexpected_keys_are_listed_at_most_five(tmp_path, state):
    extra = dict(state, **{f"extra.{i}": torch.zeros(1) for i in range(7)})
    torch.save(extra, tmp_path / "c.pth")
    with pytest.raises(ModelError, match=r"7 unexpected keys: extra\.0, extra\.1, extra\.2, extra\.3, extra\.4 \(\+2 more\)"):
        load_checkpoint(tmp_path / "c.pth")


def test_shape_mismatch(tmp_path, state):
    wrong = dict(state, **{"mask_decoder.iou_token.weight": torch.zeros(2, 256)})
    torch.save(wrong, tmp_path / "c.pth")
    with pytest.raises(ModelError, match=r"shape mismatches.*iou_token\.weight \(2, 256\) != \(1, 256\)"):
        load_checkpoint(tmp_path / "c.pth")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"this is not a checkpoint\n" * 10)
    with pytest.raises(ModelError, match=r"notes\.pth: not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_of_something_else(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ModelError, match=r"list\.pth: expected a state_dict"):
        load_checkpoint(tmp_path / "list.pth")


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"nope\.pth: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pth")
