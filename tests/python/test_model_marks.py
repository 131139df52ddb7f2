"""The bf16 mark of a model folder: written into encoder.xml without touching the weights, read by the runtime's
`auto`, which then keeps off bf16 for a model whose bf16 masks were measured too far from f32's."""

import shutil

import numpy as np
import pytest

from repmedsam_ov import ModelError, Segmenter, _core
from repmedsam_ov.model_marks import mark_bf16, set_model_info

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
