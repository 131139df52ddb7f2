"""The Segmenter API on a toy model folder (instant): the 2D and 3D loops against a re-implementation of
the reference script, scheduling independence, bad input and bad model folders."""

from __future__ import annotations

import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov import InputError, ModelError, Segmenter, _core

from repmedsam_ov.io import load_case
from repmedsam_ov.reference import box_to_model

from .conftest import TOY_INFO, build_toy_model, toy_logits, toy_reference_3d


@pytest.fixture(scope="module")
def toy(toy_model_dir) -> Segmenter:
    return Segmenter(toy_model_dir, precision="f32", threads=2)


def _random_boxes_3d(rng, d: int, h: int, w: int, n: int) -> np.ndarray:
    rows = []
    for _ in range(n):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        z0, z1 = sorted(int(v) for v in rng.integers(0, d, 2))
        rows.append([x0, y0, z0, x1, y1, z1])
    return np.array(rows, np.int64)


def _toy_reference_2d(shape, boxes) -> np.ndarray:
    h, w = shape[:2]
    new_h, new_w = _core.resized_extent(h, w)
    segs = np.zeros((h, w), np.uint16 if len(boxes) > 255 else np.uint8)
    for i, box in enumerate(boxes, start=1):
        segs[_core.upsample(toy_logits(box_to_model(box, (h, w)).tolist()), new_h, new_w, h, w)[1]] = i
    return segs


# ---- 2D -------------------------------------------------------------------------------------------------

def test_segment_2d_matches_reference_loop(toy):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 517, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 200, 180], [150, 100, 400, 290], [0, 0, 517, 300], [300, 5, 310, 9]])
    labels, trace = toy.segment_2d(image, boxes, return_trace=True)
    assert labels.dtype == np.uint8 and labels.shape == (300, 517)
    assert np.array_equal(labels, _toy_reference_2d(image.shape, boxes))
    assert trace.calls() == [box_to_model(b, (300, 517)).tolist() for b in boxes]
    assert trace.encoder_runs == 1


def test_grey_image_equals_replicated_rgb(toy):
    grey = np.random.default_rng(1).integers(0, 256, (123, 77), dtype=np.uint8)
    boxes = np.array([[5.5, 6.25, 60.9, 100.1]])
    assert np.array_equal(toy.segment_2d(grey, boxes), toy.segment_2d(np.repeat(grey[:, :, None], 3, 2), boxes))


def test_labels_are_uint16_past_255_boxes(toy):
    rng = np.random.default_rng(2)
    boxes = np.array([[x, y, x + 9, y + 9] for x, y in rng.integers(0, 90, (300, 2))])
    labels = toy.segment_2d(np.zeros((100, 100), np.uint8), boxes)
    assert labels.dtype == np.uint16
    assert np.array_equal(labels, _toy_reference_2d((100, 100), boxes))
    assert labels.max() > 255


# ---- 3D -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads,streams,cache", [(1, 1, 256), (2, 2, 256), (2, 2, 1), (2, 1, 3)])
def test_segment_3d_matches_reference_walks(toy_model_dir, threads, streams, cache):
    seg = Segmenter(toy_model_dir, precision="f32", threads=threads, streams=streams, max_cached_slices=cache)
    rng = np.random.default_rng(threads * 100 + streams * 10 + cache)
    for _ in range(6):
        d, h, w = int(rng.integers(1, 14)), int(rng.integers(3, 420)), int(rng.integers(3, 420))
        volume = rng.integers(0, 256, (d, h, w), dtype=np.uint8)
        boxes = _random_boxes_3d(rng, d, h, w, int(rng.integers(1, 7)))
        labels, trace = seg.segment_3d(volume, boxes, return_trace=True)
        expected, expected_trace = toy_reference_3d(volume, boxes)
        assert np.array_equal(labels, expected), (d, h, w, boxes.tolist())
        assert [[list(b) for b in obj] for obj in trace.decoder_boxes] == expected_trace
        needed = {z for b in boxes for z in range(b[2], b[5] + 1)}
        assert trace.encoder_runs >= len(needed)
        if cache >= d:
            assert trace.encoder_runs == len(needed)  # every slice encoded once


def test_single_slice_objects_and_volume_edges(toy):
    volume = np.random.default_rng(3).integers(0, 256, (9, 64, 80), dtype=np.uint8)
    boxes = np.array([[10, 10, 0, 40, 40, 0],    # single slice at the first slice
                      [5, 5, 8, 60, 50, 8],      # single slice at the last slice
                      [20, 20, 0, 70, 60, 8],    # the whole volume
                      [30, 30, 4, 31, 31, 4]])   # a tiny single-slice object
    labels, trace = toy.segment_3d(volume, boxes, return_trace=True)
    expected, expected_trace = toy_reference_3d(volume, boxes)
    assert np.array_equal(labels, expected)
    assert [[list(b) for b in obj] for obj in trace.decoder_boxes] == expected_trace
    assert [len(obj) for obj in trace.decoder_boxes] == [1, 1, 9, 1]
    assert trace.decoder_boxes[0] == [tuple(box_to_model([10, 10, 40, 40], (64, 80)).tolist())]


def test_trace_reports_where_the_time_went(toy):
    volume = np.random.default_rng(5).integers(0, 256, (6, 40, 50), dtype=np.uint8)
    _, trace3d = toy.segment_3d(volume, np.array([[5, 5, 0, 40, 30, 5]]), return_trace=True)
    _, trace2d = toy.segment_2d(volume[0], np.array([[5, 5, 40, 30]]), return_trace=True)
    stages = {"preprocess", "encoder", "prompt", "decoder", "postprocess", "wait", "wall"}
    for trace in (trace3d, trace2d):
        assert set(trace.seconds) == stages and min(trace.seconds.values()) >= 0
        assert trace.seconds["encoder"] > 0 and trace.seconds["decoder"] > 0 and trace.seconds["wall"] > 0
    assert trace3d.seconds["prompt"] > 0 and trace2d.seconds["prompt"] == 0  # only 3D walks derive prompts


def test_one_segmenter_shared_by_threads(toy):
    rng = np.random.default_rng(4)
    cases = []
    for _ in range(6):
        volume = rng.integers(0, 256, (6, 90, 70), dtype=np.uint8)
        cases.append((volume, _random_boxes_3d(rng, 6, 90, 70, 3)))
    expected = [toy.segment_3d(v, b) for v, b in cases]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: toy.segment_3d(*case), cases))
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


def test_gil_is_released_while_segmenting(toy):
    """Another Python thread keeps running during a call (a busy counter makes progress)."""
    volume = np.zeros((40, 256, 256), np.uint8)
    boxes = np.array([[0, 0, 0, 256, 256, 39]] * 4)
    done, ticks = threading.Event(), [0]

    def count():
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = ticks[0]
        toy.segment_3d(volume, boxes)
        progressed = ticks[0] - before
    finally:
        done.set()
        counter.join()
    assert progressed > 1000


# ---- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image,boxes,match", [
    (np.zeros((10, 10, 3), np.float32), [[0, 0, 5, 5]], "dtype float32, expected uint8"),
    (np.zeros((10, 10, 4), np.uint8), [[0, 0, 5, 5]], r"shape \(10, 10, 4\)"),
    (np.zeros((0, 10), np.uint8), [[0, 0, 5, 5]], "at least 1"),
    (np.zeros((10, 10), np.uint8), [[0, 0, 0, 5, 5, 0]], "use segment_3d"),
    (np.zeros((10, 10), np.uint8), [[0, 0, 11, 5]], "x outside the image"),
    (np.zeros((10, 10), np.uint8), [[6, 0, 5, 5]], "x_max < x_min"),
    (np.zeros((10, 10), np.uint8), [[0, 0, np.nan, 5]], "not finite"),
    (np.zeros((10, 10), np.uint8), np.zeros((0, 4)), "is empty"),
    (np.zeros((10, 10), np.uint8), [["a", "b", "c", "d"]], "dtype"),
])
def test_segment_2d_rejects_bad_input(toy, image, boxes, match):
    with pytest.raises(InputError, match=match):
        toy.segment_2d(image, boxes)


@pytest.mark.parametrize("volume,boxes,match", [
    (np.zeros((4, 10, 10), np.int16), [[0, 0, 0, 5, 5, 1]], "dtype int16"),
    (np.zeros((10, 10), np.uint8), [[0, 0, 0, 5, 5, 1]], r"expected \(D, H, W\)"),
    (np.zeros((4, 10, 10), np.uint8), [[0, 0, 5, 5]], "use segment_2d"),
    (np.zeros((4, 10, 10), np.uint8), [[0, 0, 0, 5, 5, 4]], "z outside the image"),
    (np.zeros((4, 10, 10), np.uint8), [[0, 0, 2, 5, 5, 1]], "z_max < z_min"),
    (np.zeros((4, 10, 10), np.uint8), [[0, 0, 0.5, 5, 5, 2]], "whole slice indices"),
])
def test_segment_3d_rejects_bad_input(toy, volume, boxes, match):
    with pytest.raises(InputError, match=match):
        toy.segment_3d(volume, boxes)


def test_input_errors_are_value_errors_and_checked_in_cpp_too(toy_model_dir):
    core = _core.Segmenter(str(toy_model_dir), precision="f32")
    with pytest.raises(ValueError, match="uint8"):
        core.segment_2d(np.zeros((5, 5), np.float64), np.zeros((1, 4)))
    with pytest.raises(InputError, match=r"outside the 5x5 image"):
        core.segment_2d(np.zeros((5, 5), np.uint8), np.array([[0.0, 0, 6, 5]]))
    with pytest.raises(InputError, match="whole slice indices"):
        core.segment_3d(np.zeros((3, 5, 5), np.uint8), np.array([[0, 0, 0.5, 5, 5, 1]]))


@pytest.mark.parametrize("kwargs,match", [
    ({"precision": "fp16"}, "precision 'fp16' is not one of"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"threads": "2"}, "threads must be a positive integer"),
    ({"threads": 1, "streams": 2}, r"streams \(2\) cannot exceed threads \(1\)"),
    ({"max_cached_slices": 0}, "max_cached_slices must be a positive integer"),
])
def test_bad_options(toy_model_dir, kwargs, match):
    with pytest.raises(InputError, match=match):
        Segmenter(toy_model_dir, **kwargs)


def test_bf16_needs_cpu_support(toy_model_dir):
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert Segmenter(toy_model_dir, precision="bf16").precision == "bf16"
    else:
        with pytest.raises(InputError, match="bf16.*needs a CPU with bfloat16 support"):
            Segmenter(toy_model_dir, precision="bf16")


def test_bf16_2d_is_bf16_on_images_and_bf16_encoder_on_walks():
    """The bundled model (real weights: a toy's masks would hardly move with precision), with precisions
    compared bit for bit: 2D boxes decode in bf16, 3D walks decode in f32 after a bf16 encoder."""
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("no bf16 on this CPU")
    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "imgs").glob("*.npz"))
    image, volume = (load_case(p) for p in examples)  # 2DBox_... (125 nuclei), 3DBox_... (one cord)
    z0, z1 = int(volume.boxes[0, 2]), int(volume.boxes[0, 5])
    mid = (z0 + z1) // 2
    slab, box = volume.imgs[mid - 3: mid + 4], volume.boxes.copy()
    box[0, 2], box[0, 5] = 0, 6
    run = {p: Segmenter("rep_medsam", precision=p, threads=2) for p in ("bf16", "bf16-encoder", "bf16-2d")}
    flat = {p: s.segment_2d(image.imgs, image.boxes) for p, s in run.items()}
    np.testing.assert_array_equal(flat["bf16-2d"], flat["bf16"])
    assert (flat["bf16-2d"] != flat["bf16-encoder"]).any()  # the 2D decoder really ran in bf16
    walks = {p: run[p].segment_3d(slab, box) for p in ("bf16-encoder", "bf16-2d")}
    np.testing.assert_array_equal(walks["bf16-2d"], walks["bf16-encoder"])
    assert walks["bf16-2d"].any()


# ---- model folders --------------------------------------------------------------------------------------


def test_missing_folder_and_files(tmp_path, toy_model_dir):
    with pytest.raises(ModelError, match=re.escape(f"{tmp_path / 'nope'}: no such model folder")):
        Segmenter(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="is a file, expected a model folder"):
        Segmenter(tmp_path / "file")
    partial = tmp_path / "partial"
    shutil.copytree(toy_model_dir, partial)
    (partial / "decoder.bin").unlink()
    with pytest.raises(ModelError, match=r"missing decoder\.bin \(found: decoder\.xml, encoder\.bin, encoder\.xml\)"):
        Segmenter(partial)
    with pytest.raises(ModelError, match="precision 'int8' needs encoder_int8.xml"):
        Segmenter(toy_model_dir, precision="int8")


@pytest.mark.parametrize("change,match", [
    ({"model_type": "sam2"}, "model_type is 'sam2', expected 'rep_medsam' or 'litemedsam'"),
    ({"format_version": "2"}, "format_version is '2', expected '1'.*export the model again"),
    ({"embedding_shape": "256,32,32"}, "embedding_shape is '256,32,32'"),
    ({"format_version": None}, "lacks 'format_version'"),
])
def test_model_from_another_type_or_version_is_refused(tmp_path, change, match):
    info = {k: v for k, v in {**TOY_INFO, **change}.items() if v is not None}
    folder = build_toy_model(tmp_path / "model", info)
    with pytest.raises(ModelError, match=match):
        Segmenter(folder)


def test_model_without_metadata_is_refused(tmp_path):
    folder = build_toy_model(tmp_path / "model", info={})
    with pytest.raises(ModelError, match=r"encoder\.xml: no 'model_info' metadata"):
        Segmenter(folder)


def test_encoder_and_decoder_from_different_checkpoints(tmp_path, toy_model_dir):
    other = build_toy_model(tmp_path / "other", {**TOY_INFO, "checkpoint_sha256": "f" * 64})
    mixed = tmp_path / "mixed"
    shutil.copytree(toy_model_dir, mixed)
    for ext in (".xml", ".bin"):
        shutil.copy(other / f"decoder{ext}", mixed / f"decoder{ext}")
    with pytest.raises(ModelError, match="come from different checkpoints"):
        Segmenter(mixed)


def test_corrupt_ir_gives_a_clean_model_error(tmp_path, toy_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(toy_model_dir, broken)
    (broken / "encoder.xml").write_text("<net><layers><oops")
    with pytest.raises(ModelError) as info:
        Segmenter(broken)
    text = str(info.value)
    assert text.startswith(f"{broken / 'encoder.xml'}: cannot be read as an OpenVINO IR")
    assert "Exception from" not in text and ".cpp:" not in text


def test_info_and_compiled_model_cache(tmp_path, toy_model_dir):
    seg = Segmenter(toy_model_dir, precision="f32", threads=1, cache_dir=tmp_path / "ov_cache")
    info = seg.info
    assert info["precision"] == "f32" and info["threads"] == "1" and info["model_model_type"] == "rep_medsam"
    assert any((tmp_path / "ov_cache").iterdir())
    again = Segmenter(toy_model_dir, precision="f32", threads=1, cache_dir=tmp_path / "ov_cache")
    image = np.zeros((20, 30), np.uint8)
    assert np.array_equal(again.segment_2d(image, [[1, 1, 20, 15]]), seg.segment_2d(image, [[1, 1, 20, 15]]))
    assert isinstance(Path(seg.model_dir), Path)
