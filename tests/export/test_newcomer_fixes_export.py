"""The torch side of the newcomer fixes: a file that is not a checkpoint is described (what was expected, what
was found) in one line, and training's own files get the usual mode through the shared atomic writer."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from repmedsam_export.checkpoint import load_state_dict
from repmedsam_export.train.state import save_atomic
from repmedsam_export.train.teacher import _write_json, load_teacher
from repmedsam_ov.errors import ModelError

EXPECTED = "not a PyTorch checkpoint: expected a zip archive or legacy pickle written by torch.save, found "


def _npz(path):
    with open(path, "wb") as f:  # np.savez would append .npz to the name
        np.savez(f, imgs=np.zeros(3))


def _binary(path):
    path.write_bytes(bytes(range(7, 107)))


def _foreign_object(path):
    torch.save({"when": np.datetime64("2024-01-01")}, path)  # weights_only refuses numpy scalars' globals


@pytest.mark.parametrize("write,found", [
    (lambda p: p.write_text("174812789"), "text ('174812789')"),
    (lambda p: p.write_bytes(b""), "an empty file"),
    (_binary, "100 bytes of binary data starting 07 08 09 0a 0b 0c 0d 0e"),
    (_npz, "a zip archive without data.pkl (holding imgs.npy)"),
    (lambda p: p.write_bytes(b"PK\x03\x04 cut"), "a damaged zip archive of 8 bytes"),
    (_foreign_object, "a torch.save archive that loads only with unsafe pickling (Unsupported global: "),
], ids=["text", "empty", "binary", "npz", "cut-zip", "unsafe"])
def test_a_file_that_is_not_a_checkpoint_is_described(tmp_path, write, found):
    path = tmp_path / "junk.pth"
    write(path)
    for load in (load_state_dict, load_teacher):
        with pytest.raises(ModelError) as err:
            load(path)
        message = str(err.value)
        assert message.startswith(f"{path}: {EXPECTED}{found}") and "\n" not in message
        assert len(message) < len(str(path)) + 300


def test_a_real_checkpoint_is_not_refused(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.zeros(2)}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.zeros(2))
    assert zipfile.is_zipfile(path)


def test_training_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        save_atomic({"step": 1}, tmp_path / "state.pt")
        _write_json(tmp_path / "index.json", {"done": 0})
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "index.json").read_text()) == {"done": 0}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {"state.pt": 0o644,
                                                                                    "index.json": 0o644}
