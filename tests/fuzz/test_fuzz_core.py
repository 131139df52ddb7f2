"""The C++ runtime fuzzed directly through `_core` (and the Segmenter wrapper) in a child process: random
shapes, strides, channel counts, box arrays and options must never crash or abort the process; every rejection
is an exception with a message. The ci profile runs 3 seeds x 100 cases; the long profile 100 times more."""

from __future__ import annotations

import pytest
from hypothesis import settings

from .harness import run_core_worker

_FACTOR = settings.default.max_examples / 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_core_runtime(seed, fuzz_model):
    cases = int(100 * _FACTOR)
    problems, stats = run_core_worker(fuzz_model, seed, cases, timeout=120 * _FACTOR)
    assert not problems, "\n".join(problems[:10])
    assert stats["cases"] == cases


_REGRESSIONS = r'''
import sys
import numpy as np
from repmedsam_ov import _core
s = _core.Segmenter(sys.argv[1], "f32", 1)
cases = [  # each once a defect: (2^32 + 3, 1) was segmented as 3 rows (int wrap); string/object boxes gave
           # "cannot create a pybind11::array_t from a nullptr"; complex boxes lost their imaginary part quietly
    ("segment_2d", np.zeros((2**32 + 3, 1), np.uint8), np.array([[0, 0, 1, 1.0]])),
    ("segment_2d", np.zeros((2**31 + 7, 1), np.uint8), np.array([[0, 0, 1, 1.0]])),
    ("segment_3d", np.zeros((1, 2**32 + 1, 1), np.uint8), np.array([[0, 0, 0, 1, 1, 0.0]])),
    ("segment_2d", np.zeros((4, 4), np.uint8), np.array([["a", "b", "c", "d"]])),
    ("segment_2d", np.zeros((4, 4), np.uint8), np.array([[object(), 1, 2, 3]], dtype=object)),
    ("segment_2d", np.zeros((4, 4), np.uint8), np.array([[1 + 2j, 0, 1, 1]])),
]
for method, image, boxes in cases:
    try:
        getattr(s, method)(image, boxes)
        print("accepted", image.shape, boxes.dtype)
    except ValueError as e:
        print("rejected", type(e).__name__, e)
'''


def test_core_regressions(tmp_path, fuzz_model):
    """Defects the core fuzzer found, replayed in a child process: each is an InputError with a message."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _REGRESSIONS, str(fuzz_model)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("rejected InputError") for line in lines), proc.stdout
    assert "sides must be below 2^31" in lines[0] and "integer or float" in lines[3], proc.stdout
