"""What travels to a lent GPU machine and back (repmedsam_export.train.device, export/train_on_device.sh):
a pack that fits the tool's size cap, a float16 teacher encoder that computes what the float32 one does, and
a returned student encoder merged into a Rep-MedSAM checkpoint with LiteMedSAM's decoder."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from repmedsam_export.checkpoint import load_checkpoint  # noqa: E402
from repmedsam_export.model import build_lite_medsam, build_rep_medsam  # noqa: E402
from repmedsam_export.train.data import CacheSource, select_subset  # noqa: E402
from repmedsam_export.train.device import finish, merge, pack, tree_bytes  # noqa: E402
from repmedsam_export.train.ov_teacher import TorchTeacher, open_teacher  # noqa: E402
from repmedsam_export.train.state import save_atomic  # noqa: E402

from ..conftest import REPO, SHARED  # noqa: E402

TRAIN = SHARED / "data" / "train"
pytestmark = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"{TRAIN}: training data not found")


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    torch.manual_seed(3)
    model = build_lite_medsam()
    path = tmp_path_factory.mktemp("lite") / "lite.pth"
    torch.save(model.state_dict(), path)
    return path, model


def git_tree(path, payload: int):
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "tracked.bin").write_bytes(b"x" * payload)
    (path / ".gitignore").write_text("/.devpack/\n")
    return path


def test_pack_fills_the_room_left_and_no_more(tmp_path, train_cache, lite):
    root = git_tree(tmp_path / "repo", 100_000)
    source = CacheSource(train_cache)
    size = {it: sum(len(b) for b in source.raw(it)) for it in source.items}
    pack(lite[0], train_cache, root / ".devpack", root, limit=2**40, min_images=1)  # room for all: sizes the teacher
    teacher_bytes = (root / ".devpack" / "teacher_encoder_f16.pth").stat().st_size
    data_room = sum(size[it] for it in select_subset(source.items, 5))
    limit = tree_bytes(root) + teacher_bytes + 2 * 2**20 + data_room + 4096
    result = pack(lite[0], train_cache, root / ".devpack", root, limit=limit, min_images=1)

    teacher_file = root / ".devpack" / "teacher_encoder_f16.pth"
    room = limit - tree_bytes(root) - teacher_file.stat().st_size - 2 * 2**20
    packed = CacheSource(root / ".devpack" / "data.npz")
    n = len(packed.items)
    assert packed.items == select_subset(source.items, n)
    assert sum(size[it] for it in packed.items) <= room < sum(size[it] for it in select_subset(source.items, n + 1))
    assert result["images"] == n and result["travels_mib"] <= limit / 2**20
    for item in packed.items:  # the bytes travel unchanged
        assert packed.raw(item) == source.raw(item)

    state = torch.load(teacher_file, weights_only=True)
    assert state and all(k.startswith("image_encoder.") for k in state)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    teacher = open_teacher(teacher_file)  # an encoder alone runs in torch
    assert isinstance(teacher, TorchTeacher)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = lite[1].image_encoder.eval()(x)
    got = teacher.embed_tensor(x)
    assert got.shape == (1, 256, 64, 64)
    # bf16 autocast and float16 weights: close to the float32 teacher, not equal
    assert float(((got - expected) ** 2).mean()) < 0.02 * float(expected.var())


def test_pack_refuses_when_too_little_room_is_left(tmp_path, train_cache, lite):
    root = git_tree(tmp_path / "repo", 100_000)
    from repmedsam_ov.errors import UsageError

    with pytest.raises(UsageError, match="too little to train on"):
        pack(lite[0], train_cache, root / ".devpack", root, limit=tree_bytes(root) + 6 * 2**20, min_images=1)


def test_returned_encoder_merges_with_the_teacher_decoder(tmp_path, lite):
    torch.manual_seed(4)
    student = build_rep_medsam().state_dict()
    save_atomic({"model": student, "epoch": 2, "step": 77}, tmp_path / "state" / "state.pt")
    (tmp_path / "state" / "log.jsonl").write_text('{"event": "stop"}\n')
    result = finish(tmp_path / "state", tmp_path / "out", latest=True)
    assert result["step"] == 77 and (tmp_path / "out" / "log.jsonl").is_file()
    assert (tmp_path / "out" / "student_encoder_f16.pth").stat().st_size < 16 * 2**20

    merge(tmp_path / "out" / "student_encoder_f16.pth", lite[0], tmp_path / "merged.pth")
    got = load_checkpoint(tmp_path / "merged.pth", arch="rep_medsam").state_dict()
    teacher = lite[1].state_dict()
    for k, v in got.items():
        if k.startswith("image_encoder."):
            assert torch.equal(v, student[k].half().float()) if v.is_floating_point() else torch.equal(v, student[k]), k
        else:
            assert torch.equal(v, teacher[k]), k


def test_finish_after_pipeline_training_keeps_the_whole_model_only_when_it_improved(tmp_path):
    """Pipeline training changes the decoder too: its progress is the whole model (the best one), loadable as it
    is, written only when it beat where the run started and what is committed for the same split."""
    torch.manual_seed(5)
    model = build_rep_medsam().state_dict()
    config = {"stage": "pipeline", "arch": "rep_medsam", "held_out": ["a", "b"]}
    save_atomic({"config": config, "model": {}, "epoch": 1, "step": 9}, tmp_path / "state" / "state.pt")
    result = finish(tmp_path / "state", tmp_path / "out")
    assert not result["written"] and "no best.pth" in result["why"] and not (tmp_path / "out").exists()
    save_atomic({"model": model, "epoch": 0, "score": 0.7}, tmp_path / "state" / "best.pth")
    result = finish(tmp_path / "state", tmp_path / "out")
    assert result["written"] and result["stage"] == "pipeline" and result["step"] == 9 and result["epoch"] == 0
    committed = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert committed["score"] == 0.7 and committed["split"].startswith("split:")
    save_atomic({"model": model, "epoch": 3, "score": 0.69}, tmp_path / "state" / "best.pth")
    assert "does not beat the committed 0.7000" in finish(tmp_path / "state", tmp_path / "out")["why"]
    save_atomic({"config": {**config, "held_out": ["c"]}, "model": {}, "epoch": 4, "step": 20},
                tmp_path / "state" / "state.pt")  # another split: the scores do not compare
    assert finish(tmp_path / "state", tmp_path / "out")["written"]
    assert not (tmp_path / "out" / "student_encoder_f16.pth").exists()
    saved = torch.load(tmp_path / "out" / "model_f16.pth", weights_only=True)
    assert {v.dtype for v in saved["model"].values() if v.is_floating_point()} == {torch.float16}
    got = load_checkpoint(tmp_path / "out" / "model_f16.pth", arch="rep_medsam").state_dict()
    assert got.keys() == model.keys()
    for k, v in got.items():
        assert torch.equal(v, model[k].half().float()) if v.is_floating_point() else torch.equal(v, model[k]), k


@pytest.mark.slow
def test_the_bundled_pipeline_stage_starts_on_a_bare_machine_and_resumes(tmp_path, train_cache, lite):
    """export/train_bundled.sh pipeline with no state folder: it starts from the committed progress (or the
    distillation's), trains, and a second call resumes the state instead of starting over."""
    cache = tmp_path / "xdg" / "repmedsam-ov"
    (cache / "litemedsam").mkdir(parents=True)
    (cache / "litemedsam" / "lite_medsam.pth").write_bytes(lite[0].read_bytes())
    (cache / "train").mkdir()
    (cache / "train" / "data-cache.npz").write_bytes(train_cache.read_bytes())
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    # --val-cases 1: the run scores its starting model on one case of the validation split (a 2D image), not 21
    argv = ["bash", str(REPO / "export" / "train_bundled.sh"), "pipeline", "-b", "1", "--max-steps", "1", "-t", "1",
            "--val-cases", "1"]
    for expected_step in (1, 2):
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:] + run.stdout[-2000:]
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert summary["step"] == expected_step and summary["state"] == str(cache / "train" / "pipeline")
    steps = [json.loads(line) for line in (cache / "train" / "pipeline" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "step"] == [1, 2]
    assert [r["val"]["cases"] for r in steps if r["event"] == "start"] == [1]  # scored once, before step 1
    assert (cache / "train" / "val" / "imgs").is_dir()  # the split, made on the bare machine
    assert all(np.isfinite(r["dice"]) for r in steps if r["event"] == "step")


@pytest.mark.slow
def test_the_device_script_trains_and_returns_an_encoder_on_the_cpu(tmp_path, train_cache, lite):
    """The prepared command end to end, on the CPU (the GPU machine runs the same with --device cuda)."""
    work = tmp_path / "tree"
    work.mkdir()
    for name in ("python", "export"):
        os.symlink(REPO / name, work / name)
    pack_dir = work / ".devpack"
    pack_dir.mkdir()
    state = {k: v.half() for k, v in torch.load(lite[0], weights_only=True).items() if k.startswith("image_encoder.")}
    torch.save(state, pack_dir / "teacher_encoder_f16.pth")
    (pack_dir / "data.npz").write_bytes(train_cache.read_bytes())
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVSTATE": str(tmp_path / "state"),
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(REPO / "export" / "train_on_device.sh"), "1", "--device", "cpu", "-b", "2",
                          "--max-steps", "2", "--workers", "0", "-t", "1"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:] + run.stdout[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2
    encoder = torch.load(tmp_path / "out" / "student_encoder_f16.pth", weights_only=True)["model"]
    assert encoder and all(k.startswith("image_encoder.") for k in encoder)
    steps = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "step"] and all(
        np.isfinite(r["mse"]) for r in steps if r["event"] == "step")
