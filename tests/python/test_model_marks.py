"""Marks of a model folder (the measured choice of `auto` per CPU class; the older bf16 mark): written into
encoder.xml without touching the weights, read by the runtime's `auto`, which then runs that precision, or keeps
off bf16 for a model whose bf16 masks were measured too far from f32's."""

import shutil

import numpy as np
import pytest

from repmedsam_ov import ModelError, Segmenter, _core
from repmedsam_ov.model_marks import mark_auto, mark_bf16, set_model_info

IMAGE = np.full((40, 50, 3), 90, np.uint8)
BOXES = np.array([[4, 4, 30, 30]])


def test_the_bf16_mark_steers_auto_and_leaves_the_model_as_it_was(toy_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(toy_model_dir, folder)
    before = Segmenter(folder, precision="f32", threads=1).segment_2d(IMAGE, BOXES)
    weights = (folder / "encoder.bin").read_bytes()
    native, _ = _core.auto_precision("")  # no model folder: bf16 exactly where the CPU computes it natively
    for dice in (0.95, 0.995, 0.9):  # marked twice over: the key is updated, not added again
        assert mark_bf16(folder, dice) is (dice >= 0.99)
        segmenter = Segmenter(folder, threads=1)
        precision, reason = _core.auto_precision(str(folder))
        assert segmenter.precision == precision
        assert segmenter.info["model_bf16_accuracy_ok"] == str(dice >= 0.99).lower()
        if native == "bf16":
            assert (precision == "bf16") == (dice >= 0.99), reason
            assert dice >= 0.99 or "marks it outside its accuracy bound" in reason
        else:
            assert precision != "bf16" and "no native bf16" in reason
    assert (folder / "encoder.xml").read_text().count("<bf16_accuracy_ok ") == 1
    assert (folder / "encoder.bin").read_bytes() == weights
    np.testing.assert_array_equal(Segmenter(folder, precision="f32", threads=1).segment_2d(IMAGE, BOXES), before)


def test_marking_a_file_that_is_no_model_names_it_and_leaves_it(tmp_path):
    xml = tmp_path / "encoder.xml"
    xml.write_text("<net><layers/></net>")
    with pytest.raises(ModelError, match="encoder.xml: no rt_info/model_info"):
        set_model_info(xml, {"bf16_accuracy_ok": "false"})
    xml.write_text("not xml <")
    with pytest.raises(ModelError, match="encoder.xml: cannot read it as an OpenVINO IR"):
        set_model_info(xml, {"bf16_accuracy_ok": "false"})
    assert xml.read_text() == "not xml <" and [p.name for p in tmp_path.iterdir()] == ["encoder.xml"]


def _cpu_class() -> str:
    """This CPU's class from the kernel's flags, an independent reading of the cpuid bits the runtime checks."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        flags = set()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this platform")
    if {"amx_bf16", "amx_tile"} <= flags:
        return "amx"
    return "avx512_bf16" if {"avx512_bf16", "avx512f"} <= flags else "other"


def test_the_measured_choice_for_this_cpu_class_is_what_auto_runs(toy_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(toy_model_dir, folder)
    cls = _cpu_class()
    assert _core.native_bf16_units() == {"amx": "AMX", "avx512_bf16": "AVX512-BF16", "other": ""}[cls]
    mine = "bf16-encoder" if cls != "other" else "f32"
    others = {"amx": "bf16", "avx512_bf16": "bf16", "other": "int8"}
    mark_auto(folder, others | {cls: mine}, "eval set, 53 cases")
    precision, reason = _core.auto_precision(str(folder))
    assert precision == mine and "measured for this model" in reason and "(eval set, 53 cases)" in reason
    assert Segmenter(folder, threads=1).precision == mine
    np.testing.assert_array_equal(Segmenter(folder, threads=1).segment_2d(IMAGE, BOXES),
                                  Segmenter(folder, precision=mine, threads=1).segment_2d(IMAGE, BOXES))
    # a choice this folder cannot run (no encoder_int8.xml) leaves auto to the rules without marks
    mark_auto(folder, {c: "int8" for c in others}, "eval set")
    precision, reason = _core.auto_precision(str(folder))
    assert precision != "int8" and "measured" not in reason
    set_model_info(folder / "encoder.xml", {f"auto_{c}": "fp8" for c in others})
    with pytest.raises(ModelError, match="encoder.xml: auto_.* = 'fp8' is not a precision"):
        _core.auto_precision(str(folder))


def test_mark_auto_wants_every_class_and_no_bf16_where_it_is_emulated(tmp_path):
    with pytest.raises(ValueError, match="one per CPU class"):
        mark_auto(tmp_path, {"amx": "bf16"}, "x")
    with pytest.raises(ValueError, match="would emulate it"):
        mark_auto(tmp_path, {"amx": "bf16", "avx512_bf16": "bf16", "other": "bf16-encoder"}, "x")
