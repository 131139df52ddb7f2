"""Training code: data and samples, losses, a few steps, exact resume, distillation with a stand-in teacher,
validation, the CLI. Uses the tiny stand-in architecture except for one real Rep-MedSAM step."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from repmedsam_export.train import Trainer, TrainConfig  # noqa: E402
from repmedsam_export.train.arch import build_model  # noqa: E402
from repmedsam_export.train.data import CacheSource, FolderSource, Item, build_cache, select_subset  # noqa: E402
from repmedsam_export.train.losses import achieved_iou, dice_loss, segmentation_loss  # noqa: E402
from repmedsam_export.train.samples import (Augment, BalancedOrder, SegmentationSamples,  # noqa: E402
                                            batch_keys, jittered_box, preprocess)
from repmedsam_export.train.state import default_state_dir  # noqa: E402
from repmedsam_export.train.teacher import (EmbeddingStore, build_tiny_teacher, load_teacher)  # noqa: E402
from repmedsam_ov.cli import main  # noqa: E402
from repmedsam_ov.errors import InputError, ModelError, UsageError  # noqa: E402

from ..conftest import REPO, SHARED  # noqa: E402

TRAIN = SHARED / "data" / "train"
EVAL = SHARED / "data" / "eval"
pytestmark = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"{TRAIN}: training data not found")


@pytest.fixture(scope="module")
def folder():
    return FolderSource(TRAIN)


@pytest.fixture(scope="module")
def cache(folder, tmp_path_factory):
    """A compact cache of 14 images across sources (2D and 3D slices)."""
    return build_cache(folder, tmp_path_factory.mktemp("cache") / "cache.npz", select_subset(folder.items, 14))


def tiny(tmp_path, cache, **kw) -> TrainConfig:
    base = dict(stage="pipeline", data=str(cache), state=str(tmp_path / "state"), arch="tiny", batch_size=2,
                save_minutes=100, log_every=1, threads=torch.get_num_threads())
    return TrainConfig(**{**base, **kw})


def step_records(state_dir: Path) -> list[dict]:
    lines = (state_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "step"]


# ---- data -------------------------------------------------------------------------------------------
def test_index_holds_2d_images_and_object_slices(folder):
    kinds = {it.z >= 0 for it in folder.items}
    assert kinds == {True, False}
    three_d = [it for it in folder.items if it.z >= 0][:3]
    for it in three_d:
        assert folder.read(it)[1].any(), it.key


def test_cache_reads_back_the_same_arrays(folder, cache):
    source = CacheSource(cache)
    assert len(source.items) == 14 and any(it.z >= 0 for it in source.items)
    for it in source.items:
        (a, la), (b, lb) = folder.read(it), source.read(it)
        assert la.dtype == lb.dtype == np.uint16
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(a, b)  # JPEG bytes are copied, not re-encoded
    assert cache.stat().st_size < 5_000_000


def test_subset_spreads_over_sources(folder):
    chosen = select_subset(folder.items, 13)
    assert len({it.source for it in chosen}) == 13
    assert select_subset(folder.items, 13) == chosen  # seeded


def test_balanced_order_shrinks_the_big_source():
    items = [Item(f"k{i}", "kvasir") for i in range(800)] + [Item(f"d{i}", "drive") for i in range(20)]
    assert BalancedOrder(items, 1.0).shares(items)["kvasir"] == pytest.approx(800 / 820)
    assert BalancedOrder(items, 0.5).shares(items)["kvasir"] == pytest.approx(800 ** .5 / (800 ** .5 + 20 ** .5))
    assert BalancedOrder(items, 0.0).shares(items)["kvasir"] == pytest.approx(0.5)
    order = BalancedOrder(items, 0.5, seed=3)
    np.testing.assert_array_equal(order.epoch(2), BalancedOrder(items, 0.5, seed=3).epoch(2))


def test_ranks_split_each_step():
    order = BalancedOrder([Item(str(i), "s") for i in range(10)], epoch_size=10)
    one = [k for b in batch_keys(order, 0, 0, 4, 0, 1) for k in b]
    two = [list(batch_keys(order, 0, 0, 2, r, 2)) for r in range(2)]
    merged = [k for b0, b1 in zip(*two) for k in b0 + b1]
    assert merged == one and len(one) == 8  # the partial last step is dropped


def test_preprocess_matches_the_reference_pipeline():
    pipeline = pytest.importorskip("repmedsam_export.pipeline")
    with np.load(EVAL / "imgs" / "2DBox_US_BUSI_benign127.npz") as npz:
        image = npz["imgs"]
    expected, _ = pipeline.preprocess(image)
    np.testing.assert_array_equal(preprocess(image), expected[0].numpy())


def test_samples_box_mask_padding_and_determinism(cache):
    source = CacheSource(cache)
    narrow = [i for i, it in enumerate(source.items) if source.read(it)[0].shape[1] < 256]
    assert narrow, "the subset should hold a volume narrower than 256 (BraTS 256x214 / MNI 256x216)"
    samples = SegmentationSamples(source, source.items, Augment(flips=True, colour=True), seed=1)
    for position, index in enumerate(narrow[:2] + [0, 1, 2]):
        s = samples[(0, position, index)]
        mask = s["mask"][0].numpy() > 0
        assert mask.any()
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = s["box"].numpy()
        assert 0 <= xs.min() - x0 <= 5 and 0 <= ys.min() - y0 <= 5
        assert 0 <= x1 - xs.max() <= 5 and 0 <= y1 - ys.max() <= 5
        h, w = source.read(source.items[index])[0].shape[:2]
        assert not s["image"][:, h:, :].any() and not s["image"][:, :, w:].any()  # padding stays bottom/right
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        again = samples[(0, position, index)]
        assert torch.equal(again["image"], s["image"]) and torch.equal(again["box"], s["box"])


def test_box_shrink_moves_sides_both_ways_and_keeps_tiny_boxes():
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:141, 50:91] = True  # box 50..90 x 100..140
    boxes = np.array([jittered_box(mask, np.random.default_rng(i), 5, shrink=3) for i in range(400)])
    moves = [50, 100, -90, -140] + boxes * [-1, -1, 1, 1]  # per side: how far it moved outwards
    assert moves.min() == -3 and moves.max() == 5
    assert set(np.unique(moves)) == set(range(-3, 6))
    dot = np.zeros((256, 256), dtype=bool)
    dot[10:12, 20] = True  # 1x2 pixels: a side moved inwards past the middle would invert the box
    for i in range(200):
        x0, y0, x1, y1 = jittered_box(dot, np.random.default_rng(i), 5, shrink=3)
        assert x0 <= 20 <= x1 and y0 <= 11 and y1 >= 10 and x0 <= x1 and y0 <= y1
    # without shrink the draw is LiteMedSAM's 0..shift as before, sample for sample
    rng, old = np.random.default_rng(7), np.random.default_rng(7)
    d = old.integers(0, 6, size=4)
    assert jittered_box(mask, rng, 5).tolist() == [50 - d[0], 100 - d[1], 90 + d[2], 140 + d[3]]


class _Volume:
    """A 3-slice 64x64 volume whose object (label 2) moves and grows from slice to slice, plus one 2D image."""

    rows = {0: (4, 9), 1: (10, 21), 2: (22, 39)}  # object rows per slice; columns 8..(8 + z * 10 + 9)
    items = [Item("v", "vol", 0), Item("v", "vol", 1), Item("v", "vol", 2), Item("flat", "img")]

    def read(self, item):
        image = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8)
        labels = np.zeros((64, 64), dtype=np.uint8)
        z = max(item.z, 0)
        r0, r1 = self.rows[z]
        labels[r0: r1 + 1, 8: 8 + z * 10 + 10] = 2
        return image, labels


def _flips(mask):
    return [mask, mask[:, ::-1], mask[::-1], mask[::-1, ::-1]]


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def test_neighbour_box_prompts_3d_slices_with_the_next_slice_s_box():
    source = _Volume()
    masks = {}
    for item in source.items[:3]:
        labels = source.read(item)[1]
        masks[item.z] = np.kron(labels == 2, np.ones((4, 4), dtype=bool))  # at the 256 scale, as the samples
    on = SegmentationSamples(source, source.items, Augment(flips=True), seed=3, box_shift=0, neighbour_box=1.0)
    drawn = {0: set(), 1: set(), 2: set()}
    for position in range(60):
        for z in (0, 1, 2):
            s = on[(0, position, z)]
            mask = s["mask"][0].numpy() > 0
            flip = next(k for k, m in enumerate(_flips(masks[z])) if np.array_equal(m, mask))
            box = s["box"].numpy().tolist()
            source_z = next(n for n in (z - 1, z, z + 1) if n in masks and _bbox(_flips(masks[n])[flip]) == box)
            drawn[z].add(source_z - z)
    # the middle slice takes either neighbour's box; an end slice its one neighbour's, or its own where the
    # other neighbour would lie outside the volume
    assert drawn == {0: {0, 1}, 1: {-1, 1}, 2: {-1, 0}}
    off = SegmentationSamples(source, source.items, Augment(flips=True), seed=3, box_shift=0)
    for position in range(5):  # 2D images draw nothing more: the same samples as without the option
        a, b = on[(0, position, 3)], off[(0, position, 3)]
        assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "box"))
    with pytest.raises(UsageError, match="neighbour-box 1.5"):
        TrainConfig(stage="pipeline", neighbour_box=1.5)


# ---- losses -----------------------------------------------------------------------------------------
def test_losses():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 20
    assert float(dice_loss(perfect, target)) < 1e-4
    assert torch.equal(achieved_iou(perfect, target), torch.ones(2, 1))
    assert float(achieved_iou(-perfect, target)[0]) == 0
    parts = segmentation_loss(perfect, torch.ones(2, 1), target)
    assert float(parts["loss"]) < 1e-3 and float(parts["iou"]) == 0


# ---- training ---------------------------------------------------------------------------------------
def test_tiny_training_lowers_the_loss(tmp_path, folder):
    one = build_cache(folder, tmp_path / "one.npz", [next(it for it in folder.items if it.source == "busi")])
    cfg = tiny(tmp_path, one, batch_size=1, flips=False, box_shift=0, lr=3e-3, epoch_size=64, max_steps=10)
    summary = Trainer(cfg).run()
    assert summary["stopped"] == "max_steps" and summary["step"] == 10
    losses = [r["loss"] for r in step_records(tmp_path / "state")]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_resume_continues_exactly(tmp_path, cache):
    common = dict(epoch_size=3, seed=5, batch_size=1)  # 3 steps an epoch: the runs cross an epoch end
    straight = Trainer(tiny(tmp_path / "a", cache, max_steps=4, **common))
    straight.run()
    Trainer(tiny(tmp_path / "b", cache, max_steps=2, **common)).run()
    resumed = Trainer(tiny(tmp_path / "b", cache, max_steps=2, **common))
    assert (resumed.epoch, resumed.consumed, resumed.step) == (0, 2, 2)
    resumed.run()
    a, b = step_records(tmp_path / "a" / "state"), step_records(tmp_path / "b" / "state")
    assert [r["items"] for r in a] == [r["items"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    for (name, x), y in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert straight.sched.state_dict() == resumed.sched.state_dict()
    with pytest.raises(UsageError, match="other seed"):
        Trainer(tiny(tmp_path / "b", cache, epoch_size=3, seed=6, batch_size=1))
    with pytest.raises(UsageError, match="other box_shrink"):
        Trainer(tiny(tmp_path / "b", cache, box_shrink=2, **common))
    with pytest.raises(UsageError, match="other neighbour_box"):
        Trainer(tiny(tmp_path / "b", cache, neighbour_box=0.5, **common))


def test_resume_of_a_state_saved_before_a_setting_existed(tmp_path, cache):
    common = dict(epoch_size=3, seed=5, batch_size=1)
    Trainer(tiny(tmp_path, cache, max_steps=1, **common)).run()
    path = tmp_path / "state" / "state.pt"
    state = torch.load(path, weights_only=False)
    del state["config"]["box_shrink"]  # as saved by a version without it: read as its default, 0
    torch.save(state, path)
    assert Trainer(tiny(tmp_path, cache, **common)).step == 1
    with pytest.raises(UsageError, match="other box_shrink"):
        Trainer(tiny(tmp_path, cache, box_shrink=3, **common))


def test_epoch_end_keeps_the_best_with_validation(tmp_path, cache):
    pytest.importorskip("repmedsam_export.pipeline")
    evals = tmp_path / "eval"
    for sub in ("imgs", "gts"):
        (evals / sub).mkdir(parents=True)
        for name in ("2DBox_US_BUSI_benign127.npz", "3DBox_CT_medsam2recist_000015_01_01_081-093.npz"):
            os.symlink(EVAL / sub / name, evals / sub / name)
    summary = Trainer(tiny(tmp_path, cache, epoch_size=2, epochs=1, val=str(evals))).run()
    assert summary["stopped"] == "done" and summary["epoch"] == 1
    epoch = [json.loads(r) for r in (tmp_path / "state" / "log.jsonl").read_text().splitlines()][-2]
    assert epoch["event"] == "epoch" and epoch["val"]["cases"] == 2 and "slice propagation" in epoch["val"]["method"]
    assert 0 <= epoch["val"]["dsc"] <= 1 and epoch["val"]["nsd"] is not None
    best = torch.load(tmp_path / "state" / "best.pth", weights_only=True)
    assert best["score"] == epoch["val"]["dsc"]
    build_model("tiny").load_state_dict(best["model"])


def test_a_run_from_a_checkpoint_scores_it_first_and_keeps_only_what_beats_it(tmp_path, cache, monkeypatch):
    from repmedsam_export.train import validate as validate_module

    init = tmp_path / "init.pth"
    torch.save({"model": build_model("tiny", 0).state_dict()}, init)
    scores = iter([0.5, 0.4, 0.6])  # the starting model, then epochs 0 and 1
    monkeypatch.setattr(validate_module, "validate", lambda *a: {"dsc": next(scores), "nsd": None, "cases": 1,
                                                                  "method": "scripted", "seconds": 0})
    cfg = dict(epoch_size=2, val=str(tmp_path), init=str(init))
    Trainer(tiny(tmp_path, cache, epochs=1, **cfg)).run()
    assert not (tmp_path / "state" / "best.pth").exists()  # epoch 0 (0.4) fell short of the start (0.5)
    Trainer(tiny(tmp_path, cache, epochs=2, **cfg)).run()  # resumed: the start is not scored again
    records = [json.loads(r) for r in (tmp_path / "state" / "log.jsonl").read_text().splitlines()]
    assert [r["val"]["dsc"] for r in records if "val" in r] == [0.5, 0.4, 0.6]
    assert records[0]["event"] == "start" and records[0]["init"] == str(init)
    assert torch.load(tmp_path / "state" / "best.pth", weights_only=True)["score"] == 0.6


def test_fallback_2d_segmentation_matches_the_reference(cache):
    pipeline = pytest.importorskip("repmedsam_export.pipeline")
    from repmedsam_export.train.validate import _segment_2d
    from repmedsam_ov.io import load_case

    model = build_model("tiny", seed=0).eval()
    case = load_case(EVAL / "imgs" / "2DBox_Dermoscopy_PH2_IMD024.npz")
    ours = _segment_2d(model, case.imgs, case.boxes, "cpu")
    ref = pipeline.ReferencePipeline(model).segment_2d(case.imgs, case.boxes)
    assert (ours == ref).mean() > 0.999


def test_one_real_rep_medsam_step(tmp_path, cache):
    summary = Trainer(tiny(tmp_path, cache, arch="rep_medsam", batch_size=1, max_steps=1, precision="f32")).run()
    assert summary["step"] == 1
    (record,) = step_records(tmp_path / "state")
    assert all(math.isfinite(record[k]) for k in ("loss", "dice", "bce", "iou"))


# ---- distillation -----------------------------------------------------------------------------------
def test_distillation_end_to_end(tmp_path, cache, capsys):
    teacher = build_tiny_teacher(out_chans=32)  # the tiny student's embedding width
    ckpt = tmp_path / "teacher.pth"
    torch.save({**{f"image_encoder.{k}": v for k, v in teacher.state_dict().items()},
                "prompt_encoder.no_mask_embed.weight": torch.zeros(1, 32)}, ckpt)  # a whole-SAM layout
    loaded = load_teacher(ckpt)
    x = torch.rand(1, 3, 256, 256)
    assert torch.equal(loaded.embed(x), teacher.embed(x))

    emb = tmp_path / "emb"
    assert main(["train", "embed-teacher", "-q", str(ckpt), "--data", str(cache), "--subset", "3",
                 "-o", str(emb)]) == 0
    store = EmbeddingStore(emb)
    source = CacheSource(cache)
    first = select_subset(source.items, 3)[0]
    expected = teacher.embed(torch.from_numpy(preprocess(source.read(first)[0]))[None])[0].numpy()
    np.testing.assert_allclose(store.get(first.key), expected, rtol=1e-2, atol=1e-3)

    state = tmp_path / "distill"
    before = build_model("tiny", seed=0).state_dict()
    capsys.readouterr()
    assert main(["train", "distill", "-q", "--data", str(cache), "--subset", "3", "--arch", "tiny", "--state",
                 str(state), "--teacher-embeddings", str(emb), "-b", "1", "--epochs", "1", "--lr", "1e-3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stopped"] == "done" and summary["step"] == 3
    records = step_records(state)
    assert all(math.isfinite(r["mse"]) for r in records)
    after = torch.load(state / "best.pth", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("image_encoder."))
    assert not torch.equal(before["image_encoder.neck.0.weight"], after["image_encoder.neck.0.weight"])


def test_distill_without_embeddings_names_the_fix(tmp_path, cache):
    with pytest.raises(InputError, match="embed-teacher"):
        Trainer(tiny(tmp_path, cache, stage="distill", teacher_embeddings=str(tmp_path / "none")))


def test_teacher_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.foo": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="not a SAM-layout ViT"):
        load_teacher(bad)


# ---- state folder and CLI ---------------------------------------------------------------------------
def test_state_folder_is_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir("pipeline") == tmp_path / ".cache" / "repmedsam-ov" / "train" / "pipeline"
    monkeypatch.undo()
    path = TrainConfig(stage="finetune").state_dir().resolve()
    assert REPO.resolve() not in path.parents and path.parts[-3:] == ("repmedsam-ov", "train", "finetune")


def test_cli_stage_defaults():
    from repmedsam_export.train.cli import config_from_args
    from repmedsam_ov.cli import build_parser

    args = build_parser().parse_args(["train", "finetune", "--data", "d", "--max-steps", "3", "--subset", "4"])
    cfg = config_from_args(args)
    assert (cfg.stage, cfg.colour_jitter, cfg.lr, cfg.max_steps, cfg.subset) == ("finetune", True, 1e-5, 3, 4)
    cfg = config_from_args(build_parser().parse_args(["train", "pipeline", "--data", "d", "--no-flips"]))
    assert (cfg.colour_jitter, cfg.flips, cfg.weight_decay, cfg.lr) == (False, False, 0.01, 5e-5)


def test_cli_without_the_export_extra(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "repmedsam_export.train.cli", None)
    assert main(["train", "pipeline", "--data", "x"]) == 1
    assert "pip install 'repmedsam-ov[export]'" in capsys.readouterr().err


def test_finetune_needs_a_starting_point(tmp_path, cache):
    with pytest.raises(UsageError, match="--init"):
        Trainer(tiny(tmp_path, cache, stage="finetune", state=str(tmp_path / "train" / "finetune")))


def test_sigterm_finishes_the_step_and_saves(tmp_path, cache):
    """A session or scheduler ending the run with SIGTERM loses nothing: the step ends, the state is saved."""
    import signal
    import subprocess
    import sys
    import time

    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "repmedsam_export.train", "pipeline", "-q", "--data", str(cache),
                             "--arch", "tiny", "--state", str(state), "-b", "1", "--epochs", "1000", "--log-every", "1",
                             "--save-minutes", "100", "-t", "1"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (state / "log.jsonl").is_file() or not step_records(state):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["stopped"] == "signal"
    saved = torch.load(state / "state.pt", weights_only=True)
    assert saved["step"] == summary["step"] >= 1


def test_auto_precision_without_the_compiled_runtime_is_f32(monkeypatch, caplog):
    """The device script runs a bare source tree (no compiled `_core` to probe the CPU with): auto trains in
    f32 there and says why, instead of failing at import."""
    import sys

    from repmedsam_export.train.loop import resolve_precision

    monkeypatch.setitem(sys.modules, "repmedsam_ov._core", None)  # import of it raises ImportError
    assert resolve_precision("auto", torch.device("cpu")) == "f32"
    assert "not importable here" in caplog.text
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
