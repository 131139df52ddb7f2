"""The model-free box fill (the baseline a segmenter must beat) against the challenge's own box-fill
predictions, and the litemedsam-* bench engines: any LiteMedSAM-type model folder runs through the runtime."""

import json
import shutil

import numpy as np
import pytest

from repmedsam_ov.cli import main
from repmedsam_ov.io import load_case
from repmedsam_ov.reference import box_fill
from repmedsam_ov.segmenter import Segmenter

from ..conftest import SHARED

GOLDEN_BOXFILL = SHARED / "golden" / "metrics" / "segs" / "boxfill"
EVAL = SHARED / "data" / "eval"


@pytest.mark.skipif(not GOLDEN_BOXFILL.is_dir(), reason=f"{GOLDEN_BOXFILL} not found")
@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN_BOXFILL.glob("*.npz")))
def test_box_fill_equals_the_recorded_box_fill(name):
    case = load_case(EVAL / "imgs" / name)
    got = box_fill(case.imgs.shape, case.boxes, case.is_3d)
    with np.load(GOLDEN_BOXFILL / name) as z:
        want = z["segs"]
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_litemedsam_engine_runs_a_litemedsam_folder(toy_model_dir, tmp_path, capsys):
    folder = tmp_path / "lite"
    shutil.copytree(toy_model_dir, folder)
    for name in ("encoder.xml", "decoder.xml"):  # the toy model relabelled as a LiteMedSAM folder
        xml = folder / name
        xml.write_text(xml.read_text().replace('value="rep_medsam"', 'value="litemedsam"'))
    case = tmp_path / "2DBox_Test_lite.npz"
    np.savez(case, imgs=np.full((40, 60, 3), 90, np.uint8), boxes=np.array([[5, 5, 30, 20]]))
    out = tmp_path / "b.jsonl"
    assert main(["bench", str(case), "--engines", "litemedsam-f32,box-fill", "--litemedsam", str(folder),
                 "--json", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["engine"] for r in rows] == ["litemedsam-f32", "box-fill"]
    # the toy decoder's mask is the box itself (in model space): box fill agrees up to the box edges
    assert rows[1]["dice_vs_reference"] > 0.9
    assert Segmenter(folder, precision="f32").info["model_model_type"] == "litemedsam"
    assert main(["bench", str(case), "--engines", "litemedsam-f32", "--litemedsam", str(tmp_path / "none")]) == 2
    assert "need a LiteMedSAM model folder" in capsys.readouterr().err
