"""The runtime package segments whole cases without torch: run in a fresh interpreter, then check
sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from ..conftest import GOLDEN


def test_whole_cases_run_without_torch(toy_model_dir):
    script = textwrap.dedent(f"""
        import json, sys
        import repmedsam_ov
        from repmedsam_ov import Segmenter, load_case
        seg = Segmenter({str(toy_model_dir)!r}, precision="f32")
        shapes = []
        for name in ("2DBox_Mammography_demo", "3DBox_MR_sct_t1w-cord"):
            case = load_case({str(GOLDEN / "cases")!r} + "/" + name + ".npz")
            segs = seg.segment(case)
            shapes.append([list(segs.shape), int(segs.max())])
        print(json.dumps({{"shapes": shapes, "torch": "torch" in sys.modules,
                           "torch_like": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "nncf"))}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shapes"] == [[[2604, 1726], 4], [[77, 76, 42], 1]]
    assert not result["torch"] and result["torch_like"] == []
