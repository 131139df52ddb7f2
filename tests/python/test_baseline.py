"""The plain OpenVINO-Python baseline (and with it the numpy/OpenCV reference processing) against golden segs."""

import numpy as np
import pytest

from repmedsam_ov.baseline import OVPythonLoop
from repmedsam_ov.io import load_case

from ..conftest import GOLDEN, label_dices


# the 3D case repeats the runtime's and the torch reference's whole-case run of the same volume (~1 min): slow
@pytest.mark.parametrize("name", ["2DBox_Microscopy_StarDistDSB_img2d",
                                  pytest.param("3DBox_MR_sct_t1w-cord", marks=pytest.mark.slow)])
def test_baseline_matches_golden(golden_model_dir, name):
    case = load_case(GOLDEN / "cases" / f"{name}.npz")
    loop = OVPythonLoop(golden_model_dir, "f32")
    segs = loop.segment(case)
    gold = np.load(GOLDEN / "segs" / f"{name}.npz")["segs"]
    assert segs.dtype == gold.dtype and segs.shape == gold.shape
    assert min(label_dices(segs, gold, len(case.boxes))) >= 0.999
    assert loop.decoder_calls == (125 if case.boxes.shape[1] == 4 else 77)
