"""Distillation from a teacher run by OpenVINO: the teacher wrapper, embed-teacher through a model folder,
stored targets turned with their inputs, on-the-fly targets for augmented views, and a Rep-MedSAM started
from LiteMedSAM's decoder. The teacher here is a tiny OpenVINO encoder (4x4 average pool, then a 1x1
convolution to 32 channels): equivariant to 90° turns and flips, so turned targets can be checked exactly."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import openvino as ov  # noqa: E402
import openvino.opset13 as ops  # noqa: E402

from repmedsam_export.model import build_lite_medsam  # noqa: E402
from repmedsam_export.train import Trainer, TrainConfig  # noqa: E402
from repmedsam_export.train.data import CacheSource  # noqa: E402
from repmedsam_export.train.ov_teacher import (MaskTeacher, OpenVINOTeacher, open_mask_teacher,  # noqa: E402
                                               open_teacher)
from repmedsam_export.train.losses import distillation_loss, segmentation_loss, teacher_mask_loss  # noqa: E402
from repmedsam_export.train.samples import EmbeddingSamples, augmented_view, crop_pair, dihedral, preprocess  # noqa: E402
from repmedsam_export.train.teacher import EmbeddingStore  # noqa: E402
from repmedsam_ov.cli import main  # noqa: E402
from repmedsam_ov.errors import ModelError, UsageError  # noqa: E402

from ..conftest import SHARED  # noqa: E402

TRAIN = SHARED / "data" / "train"
WEIGHTS = np.linspace(-1, 1, 32 * 3, dtype=np.float32).reshape(32, 3, 1, 1)
pytestmark = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"{TRAIN}: training data not found")


def pool_teacher(folder):
    image = ops.parameter([-1, 3, 256, 256], np.float32, name="image")
    pooled = ops.avg_pool(image, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)
    out = ops.convolution(pooled, ops.constant(WEIGHTS), [1, 1], [0, 0], [0, 0], [1, 1])
    out.output(0).get_tensor().set_names({"embedding"})
    model = ov.Model([out], [image], "pool_teacher")
    model.set_rt_info("ab" * 32, ["model_info", "checkpoint_sha256"])
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, folder / "encoder.xml", compress_to_fp16=False)
    return folder


def expected_embedding(x: np.ndarray) -> np.ndarray:
    """The pool teacher on a (3, h, w) input, h and w divisible by 4 (a whole image or a crop)."""
    h, w = x.shape[1:]
    pooled = x.reshape(3, h // 4, 4, w // 4, 4).mean(axis=(2, 4))
    return np.einsum("oc,chw->ohw", WEIGHTS[:, :, 0, 0], pooled)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return pool_teacher(tmp_path_factory.mktemp("teacher") / "model")


def test_openvino_teacher_computes_the_model(teacher_dir):
    teacher = open_teacher(teacher_dir)
    assert isinstance(teacher, OpenVINOTeacher) and teacher.out_shape == (32, 64, 64)
    assert teacher.source_sha256 == "ab" * 32
    x = np.random.default_rng(0).random((2, 3, 256, 256), dtype=np.float32)
    got = OpenVINOTeacher(teacher_dir, precision="f32").embed_batch(x)
    np.testing.assert_allclose(got, np.stack([expected_embedding(v) for v in x]), atol=1e-5)


def test_turned_stored_targets_equal_the_teacher_on_turned_inputs():
    x = np.random.default_rng(1).random((3, 256, 256), dtype=np.float32)
    for k in range(4):
        for flip in (False, True):
            np.testing.assert_allclose(dihedral(expected_embedding(x), k, flip),
                                       expected_embedding(dihedral(x, k, flip)), atol=1e-5)


def test_augmented_views_are_seeded_uint8_images():
    image = (np.arange(60 * 80 * 3) % 251).astype(np.uint8).reshape(60, 80, 3)
    a = augmented_view(image, np.random.default_rng([0, 1]))
    b = augmented_view(image, np.random.default_rng([0, 1]))
    assert a.dtype == np.uint8 and a.ndim == 3 and np.array_equal(a, b)
    grey = augmented_view(image[..., 0], np.random.default_rng(2))
    assert grey.ndim == 2 and grey.dtype == np.uint8


def test_embed_teacher_and_distill_with_views(tmp_path, train_cache, teacher_dir, capsys):
    emb = tmp_path / "emb"
    assert main(["train", "embed-teacher", "-q", str(teacher_dir), "--data", str(train_cache), "-o", str(emb)]) == 0
    store = EmbeddingStore(emb)
    source = CacheSource(train_cache)
    first = source.items[0]
    np.testing.assert_allclose(store.get(first.key), expected_embedding(preprocess(source.read(first)[0])),
                               rtol=1e-2, atol=2e-2)  # float16 storage, bf16 inference where the CPU has it

    samples = EmbeddingSamples(source, source.items, store, open_teacher(teacher_dir), views=0.5)
    kinds = set()
    for pos in range(12):
        s = samples[(0, pos, pos % len(source.items))]
        target = expected_embedding(s["image"].numpy())  # stored (turned) or on the fly: always the teacher's
        np.testing.assert_allclose(s["target"].numpy(), target, rtol=2e-2, atol=5e-2)
        kinds.add(bool(np.random.default_rng([0, 0, pos]).random() < 0.5))
    assert kinds == {True, False}

    for name, extra in (("stored+views", ["--teacher-embeddings", str(emb)]),
                        ("views only", ["--teacher-embeddings", str(tmp_path / "none"), "--views", "1"])):
        state = tmp_path / name
        capsys.readouterr()
        assert main(["train", "distill", "-q", "--data", str(train_cache), "--arch", "tiny", "--state", str(state),
                     "--teacher", str(teacher_dir), *extra, "-b", "2", "--max-steps", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["step"] == 2
        steps = [json.loads(line) for line in (state / "log.jsonl").read_text().splitlines()]
        assert all(math.isfinite(r["mse"]) for r in steps if r["event"] == "step")


def test_crops_keep_input_and_target_aligned(tmp_path, train_cache, teacher_dir, capsys):
    """The pool teacher is equivariant to 4-pixel shifts, so a crop's target must equal the teacher's embedding
    of the cropped input exactly (up to float16 storage): a corner off the 4-pixel grid, or a target cut at
    another place than the input, fails."""
    emb = tmp_path / "emb"
    assert main(["train", "embed-teacher", "-q", str(teacher_dir), "--data", str(train_cache), "-o", str(emb)]) == 0
    source = CacheSource(train_cache)
    samples = EmbeddingSamples(source, source.items, EmbeddingStore(emb), open_teacher(teacher_dir), views=0.5,
                               crop=128)
    corners = set()
    for pos in range(12):
        s = samples[(0, pos, pos % len(source.items))]
        assert s["image"].shape == (3, 128, 128) and s["target"].shape == (32, 32, 32)
        np.testing.assert_allclose(s["target"].numpy(), expected_embedding(s["image"].numpy()), rtol=2e-2,
                                   atol=5e-2)
        corners.add(s["image"].numpy().tobytes()[:64])
    assert len(corners) > 1
    state = tmp_path / "state"
    capsys.readouterr()
    assert main(["train", "distill", "-q", "--data", str(train_cache), "--arch", "tiny", "--state", str(state),
                 "--teacher", str(teacher_dir), "--teacher-embeddings", str(emb), "--crop", "128", "-b", "2",
                 "--max-steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2


def test_crop_corners_stay_on_the_grid_and_inside_the_content():
    x = np.arange(3 * 256 * 256, dtype=np.float32).reshape(3, 256, 256)
    target = x[:1, ::4, ::4]  # cell (r, c) holds the input pixel at its top-left corner
    for seed in range(50):
        pixels, cells = crop_pair(x, target, (150, 256), 64, np.random.default_rng(seed))
        top, left = divmod(int(pixels[0, 0, 0]), 256)
        assert top % 4 == 0 and left % 4 == 0 and top + 64 <= 150 and left + 64 <= 256
        np.testing.assert_array_equal(cells, pixels[:1, ::4, ::4])
    pixels, _ = crop_pair(x, target, (40, 30), 64, np.random.default_rng(0))  # content smaller than the crop
    assert int(pixels[0, 0, 0]) == 0


def test_distillation_loss_leaves_out_the_margin():
    student, teacher = torch.zeros(2, 8, 10, 10), torch.zeros(2, 8, 10, 10)
    teacher[..., 0, :] = 100.0  # only in the margin
    teacher[..., 5, 5] = 1.0
    assert float(distillation_loss(student, teacher, margin=2)["loss"]) == pytest.approx(1 / 36)
    assert float(distillation_loss(student, teacher)["loss"]) > 9


def test_views_below_one_need_stored_embeddings(tmp_path, train_cache, teacher_dir, capsys):
    assert main(["train", "distill", "-q", "--data", str(train_cache), "--arch", "tiny", "--state", str(tmp_path / "s"),
                 "--teacher", str(teacher_dir), "--teacher-embeddings", str(tmp_path / "none"), "--max-steps", "1"]) == 2
    assert "pass --views 1" in capsys.readouterr().err


def test_rep_medsam_starts_from_the_litemedsam_decoder(tmp_path, train_cache):
    lite = build_lite_medsam().state_dict()
    with torch.no_grad():
        lite["mask_decoder.iou_prediction_head.layers.0.bias"] += 0.5  # not an init value
        lite["image_encoder.neck.3.weight"] *= 0.14  # the trained teacher's scale
    ckpt = tmp_path / "lite.pth"
    torch.save(lite, ckpt)
    trainer = Trainer(TrainConfig(stage="pipeline", data=str(train_cache), state=str(tmp_path / "s"), init=str(ckpt),
                                  threads=torch.get_num_threads()))
    got = trainer.model.state_dict()
    for k, v in lite.items():
        if not k.startswith("image_encoder."):
            assert torch.equal(got[k], v), k
    assert any(k.startswith("image_encoder.features.") for k in got)
    # the neck after its first conv has the teacher's shapes and values (its last LayerNorm sets the embedding
    # scale); the first conv (448 vs 320 inputs) stays the student's own
    for name in ("neck.1.weight", "neck.2.weight", "neck.3.weight", "neck.3.bias"):
        assert torch.equal(got["image_encoder." + name], lite["image_encoder." + name]), name
    assert got["image_encoder.neck.0.weight"].shape != lite["image_encoder.neck.0.weight"].shape


class TorchPoolTeacher:
    """The pool teacher in torch, with TorchTeacher's `embed_tensor`: what a GPU teacher gives the trainer."""

    def embed_tensor(self, images):
        pooled = torch.nn.functional.avg_pool2d(images.float(), 4)
        return torch.nn.functional.conv2d(pooled, torch.from_numpy(WEIGHTS))


def test_a_torch_teacher_targets_whole_batches_in_the_trainer(tmp_path, train_cache, teacher_dir, monkeypatch):
    """Views only with a torch teacher: the samples come without targets (no teacher in data-loading
    processes), the same views the per-sample path makes, and the trainer's loss is against the teacher's
    embedding of the batch."""
    source = CacheSource(train_cache)
    per_sample = EmbeddingSamples(source, source.items, None, OpenVINOTeacher(teacher_dir, precision="f32"), views=1.0)
    deferred = EmbeddingSamples(source, source.items, deferred=True)
    for pos in range(4):
        key = (0, pos, pos % len(source.items))
        a, b = per_sample[key], deferred[key]
        assert "target" not in b and torch.equal(a["image"], b["image"])
        got = TorchPoolTeacher().embed_tensor(b["image"][None])[0]
        np.testing.assert_allclose(got.numpy(), a["target"].numpy(), rtol=1e-4, atol=1e-4)

    import repmedsam_export.train.ov_teacher as ov_teacher

    monkeypatch.setattr(ov_teacher, "open_teacher", lambda *a, **k: TorchPoolTeacher())
    cfg = TrainConfig(stage="distill", data=str(train_cache), arch="tiny", state=str(tmp_path / "s"), teacher="torch",
                      teacher_embeddings=str(tmp_path / "none"), views=1.0, batch_size=2,
                      threads=torch.get_num_threads())
    trainer = Trainer(cfg)
    assert trainer.dataset.deferred and isinstance(trainer.batch_teacher, TorchPoolTeacher)
    batch = next(iter(trainer._loader()))
    image = batch["image"].to(memory_format=trainer.memory_format)
    with torch.no_grad(), trainer._autocast():
        expected = distillation_loss(trainer.net(image), TorchPoolTeacher().embed_tensor(image))["mse"]
    assert trainer.train_step(batch)["mse"] == pytest.approx(float(expected), rel=1e-3)


def test_mask_teacher_gives_the_model_s_logits(golden_model_dir, golden_model):
    x = np.random.default_rng(3).random((2, 3, 256, 256), dtype=np.float32)
    boxes = np.array([[30, 40, 150, 200], [5, 5, 60, 90]], dtype=np.float32)
    got = MaskTeacher(golden_model_dir, precision="f32").mask_logits(x, boxes)
    with torch.no_grad():
        want = [golden_model.decode(golden_model.image_encoder(torch.from_numpy(x[i: i + 1])),
                                    torch.from_numpy(boxes[i: i + 1, None]))[0].numpy() for i in range(2)]
    assert got.shape == (2, 1, 256, 256)
    np.testing.assert_allclose(got, np.concatenate(want), atol=2e-3)
    with pytest.raises(ModelError, match="decoder.xml"):
        open_mask_teacher(pool_teacher(golden_model_dir.parent / "pool-only"))


def test_teacher_masks_add_the_weighted_bce_to_the_teacher_s_masks(tmp_path, train_cache, golden_model_dir):
    common = dict(stage="pipeline", data=str(train_cache), arch="tiny", batch_size=2, precision="f32",
                  threads=torch.get_num_threads())
    with pytest.raises(UsageError, match="--teacher-masks needs --teacher"):
        TrainConfig(state=str(tmp_path / "a"), teacher_masks=0.5, **common)
    trainer = Trainer(TrainConfig(state=str(tmp_path / "b"), teacher=str(golden_model_dir), teacher_masks=0.5,
                                  **common))
    batch = next(iter(trainer._loader()))
    image = batch["image"].to(memory_format=trainer.memory_format)
    with torch.no_grad():
        logits, iou = trainer.model(image, batch["box"][:, None])
        teacher = MaskTeacher(golden_model_dir, precision="f32").mask_logits(batch["image"].numpy(),
                                                                              batch["box"].numpy())
        kd = float(teacher_mask_loss(logits, torch.from_numpy(teacher)))
        seg = float(segmentation_loss(logits, iou, batch["mask"])["loss"])
    parts = trainer.train_step(batch)
    assert kd > 0.01 and parts["teacher"] == pytest.approx(kd, rel=1e-3, abs=1e-4)
    assert parts["loss"] == pytest.approx(seg + 0.5 * kd, rel=1e-3, abs=1e-4)
