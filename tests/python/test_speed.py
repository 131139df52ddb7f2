"""Issue 30's speed work, checked for what it must not change and for what it reports: 3D walk steps on one slice
share decoder calls (results equal one box a call and the reference), the stage profile reports waiting, and
`bench --profile` holds each case against its floor. No wall-clock asserts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repmedsam_ov import Segmenter
from repmedsam_ov.cli import main
from repmedsam_ov.floor import case_floor, source_of
from repmedsam_ov.io import Case

from ..conftest import label_dices
from .conftest import load_golden, toy_reference_3d

STAGES = {"preprocess", "encoder", "prompt", "decoder", "postprocess", "wait", "wall"}


def _many_objects(rng, d: int, h: int, w: int, n: int) -> np.ndarray:
    """n boxes whose z ranges overlap a lot (shared slices, several calls per slice)."""
    rows = []
    for _ in range(n):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        z0 = int(rng.integers(0, d // 2))
        rows.append([x0, y0, z0, x0 + int(rng.integers(4, w - x0)), y0 + int(rng.integers(4, h - y0)),
                     int(rng.integers(z0, d))])
    return np.array(rows, np.int64)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_3d_steps_share_calls_and_match_the_reference(toy_model_dir, batch):
    seg = Segmenter(toy_model_dir, precision="f32", threads=2, streams=2, decoder_batch=batch)
    rng = np.random.default_rng(batch)
    volume = rng.integers(0, 256, (11, 70, 90), dtype=np.uint8)
    boxes = _many_objects(rng, 11, 70, 90, 9)
    labels, trace = seg.segment_3d(volume, boxes, return_trace=True)
    expected, expected_trace = toy_reference_3d(volume, boxes)
    assert np.array_equal(labels, expected)
    assert [[list(b) for b in obj] for obj in trace.decoder_boxes] == expected_trace
    # one call per slice and direction (middle, upward, downward), split into calls of at most `batch` boxes
    calls = 0
    for z in range(11):
        mid = sum(z == (b[5] - b[2]) // 2 + b[2] for b in boxes)
        upward = sum((b[5] - b[2]) // 2 + b[2] < z <= b[5] for b in boxes)
        downward = sum(b[2] <= z < (b[5] - b[2]) // 2 + b[2] for b in boxes)
        calls += sum(-(-k // batch) for k in (mid, upward, downward))
    assert trace.decoder_calls == calls
    assert trace.encoder_runs == len({z for b in boxes for z in range(b[2], b[5] + 1)})


def test_many_objects_on_few_slices(toy_model_dir):
    """300 objects (uint16 labels): every walk keeps its previous mask at once, cropped to where it is."""
    seg = Segmenter(toy_model_dir, precision="f32", threads=2)
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 256, (4, 48, 64), dtype=np.uint8)
    boxes = _many_objects(rng, 4, 48, 64, 300)
    labels, trace = seg.segment_3d(volume, boxes, return_trace=True)
    expected, expected_trace = toy_reference_3d(volume, boxes)
    assert labels.dtype == np.uint16 and np.array_equal(labels, expected)
    assert [[list(b) for b in obj] for obj in trace.decoder_boxes] == expected_trace


def test_stage_profile_reports_waiting(toy_model_dir):
    seg = Segmenter(toy_model_dir, precision="f32", threads=2, streams=2)
    rng = np.random.default_rng(8)
    volume = rng.integers(0, 256, (9, 60, 60), dtype=np.uint8)
    _, trace = seg.segment_3d(volume, _many_objects(rng, 9, 60, 60, 6), return_trace=True)
    assert set(trace.seconds) == STAGES and min(trace.seconds.values()) >= 0
    assert trace.seconds["encoder"] > 0 and trace.seconds["decoder"] > 0


def test_network_seconds(toy_model_dir):
    times = Segmenter(toy_model_dir, precision="f32", threads=2).network_seconds(repeats=2)
    assert set(times) == {"encoder", "decoder_2d", "decoder_2d_batched", "decoder_3d", "decoder_3d_batched"}
    assert all(np.isfinite(t) and t > 0 for t in times.values())


def test_case_floor_counts_the_reference_work():
    network = {"encoder": 0.1, "decoder_2d": 0.02, "decoder_2d_batched": 0.01, "decoder_3d": 0.03,
               "decoder_3d_batched": 0.04}
    volume = Case(None, np.zeros((10, 8, 8), np.uint8), np.array([[0, 0, 2, 4, 4, 5], [1, 1, 4, 6, 6, 8]]), None)
    floor = case_floor(volume, network)
    assert (floor.slices, floor.boxes) == (7, 4 + 5)  # slices 2..8; steps 2..5 and 4..8
    assert floor.encoder == pytest.approx(0.7) and floor.decoder == pytest.approx(9 * 0.03)
    image = Case(None, np.zeros((8, 8, 3), np.uint8), np.array([[0, 0, 4, 4]] * 3), None)
    floor = case_floor(image, network)
    assert floor.seconds == pytest.approx(0.1 + 3 * 0.01)
    assert source_of("3DBox_CT_biomedparse_AMOS_amos_0018") == "CT/biomedparse" and source_of("tiny") == "tiny"


def test_bench_profile_holds_cases_against_their_floor(toy_model_dir, tmp_path, capsys):
    rng = np.random.default_rng(9)
    np.savez(tmp_path / "2DBox_Test_flat.npz", imgs=rng.integers(0, 255, (64, 80, 3), dtype=np.uint8),
             boxes=np.array([[4, 4, 40, 30]]))
    np.savez(tmp_path / "3DBox_Test_vol.npz", imgs=rng.integers(0, 255, (6, 40, 50), dtype=np.uint8),
             boxes=np.array([[5, 5, 1, 30, 30, 4], [10, 8, 0, 40, 35, 5]]), spacing=np.ones(3))
    out = tmp_path / "bench.jsonl"
    assert main(["bench", str(tmp_path), "--engines", "runtime-f32", "-m", str(toy_model_dir), "-t", "2",
                 "--json", str(out), "--profile", "-q"]) == 0
    table = capsys.readouterr().out
    assert "against the floor" in table and "per source" in table and "Test/vol" in table
    rows = {r["case"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"2DBox_Test_flat", "3DBox_Test_vol"}
    for row in rows.values():
        assert row["encoder_floor_s"] > 0 and row["decoder_floor_s"] > 0
        floor = row["encoder_floor_s"] + row["decoder_floor_s"]
        assert row["floor_ratio"] == pytest.approx(row["seconds"] / floor)
        assert set(row["stage_seconds"]) == STAGES
    assert rows["3DBox_Test_vol"]["slices"] == 6 and rows["3DBox_Test_vol"]["boxes"] == 4 + 6


def test_batched_golden_walks_equal_one_box_a_call(golden_segmenter):
    """The real decoder: sharing calls changes neither a prompt nor (beyond Dice 0.999) a mask of the published
    script's, and the labels equal those of one box a call."""
    imgs, boxes, gold, gold_trace = load_golden("3DBox_MR_sct_t1w-cord")  # one object over all 77 slices
    boxes = np.concatenate([boxes + [[-3, -2, 0, 3, 2, 0]], boxes])  # another object first, on the same slices
    single = golden_segmenter(decoder_batch=1).segment_3d(imgs, boxes, return_trace=True)
    batched = golden_segmenter().segment_3d(imgs, boxes, return_trace=True)
    assert batched[1].decoder_calls < single[1].decoder_calls
    assert batched[1].decoder_boxes == single[1].decoder_boxes
    assert [list(b) for b in batched[1].decoder_boxes[1]] == gold_trace
    assert np.array_equal(batched[0], single[0])
    assert label_dices(batched[0] == 2, gold == 1, 1)[0] >= 0.999  # label 2 is painted last, as the golden one


def test_infer_caches_compiled_networks(toy_model_dir, tmp_path, monkeypatch):
    """`infer` keeps compiled networks for the next run: in --cache-dir, else $REPMEDSAM_COMPILE_CACHE, else under
    XDG_CACHE_HOME; "none" turns it off. (That OpenVINO fills the folder: test_runtime_api's cache test.)"""
    from repmedsam_ov.cli import build_parser
    from repmedsam_ov.commands.infer import make_backend
    from repmedsam_ov.engines import compile_cache

    case = tmp_path / "2DBox_Test_cached.npz"
    np.savez(case, imgs=np.zeros((30, 40, 3), np.uint8), boxes=np.array([[2, 2, 20, 20]]))
    cache = tmp_path / "compiled"
    args = ["infer", str(case), "-m", str(toy_model_dir), "--precision", "f32", "-q", "--overwrite"]
    assert main(args + ["-o", str(tmp_path / "a"), "--cache-dir", str(cache)]) == 0
    assert main(args + ["-o", str(tmp_path / "b"), "--cache-dir", str(cache)]) == 0  # loaded from the cache
    with np.load(tmp_path / "a" / case.name) as a, np.load(tmp_path / "b" / case.name) as b:
        assert np.array_equal(a["segs"], b["segs"]) and a["segs"].any()
    for option, expected in ((["--cache-dir", str(cache)], str(cache)), (["--cache-dir", "none"], "")):
        engine = make_backend(build_parser().parse_args(args + ["-o", str(tmp_path / "c")] + option))
        assert engine.segmenter.info["cache_dir"] == expected
    monkeypatch.delenv("REPMEDSAM_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache() == str(tmp_path / "xdg" / "repmedsam-ov" / "openvino")
    assert compile_cache("none") is None and compile_cache(str(cache)) == str(cache)
    monkeypatch.setenv("REPMEDSAM_COMPILE_CACHE", "NONE")
    assert compile_cache() is None
