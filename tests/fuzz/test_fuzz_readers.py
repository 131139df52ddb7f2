"""Generated hostile inputs for every reader, through `repmedsam-ov infer` in this process and the Python
readers (see harness.py for the invariants, gen.py for what is generated). The ci profile runs the counts
below (about 1,000 cases); the long profile 100 times as many."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings

from .corpus import failures_folder, save_case
from .gen import READERS
from .harness import run_in_process

# cases per reader in the ci profile
CI_COUNTS = {"npz": 170, "boxes": 200, "nifti": 110, "nrrd": 100, "mha": 100, "dicom": 40, "image": 140, "real": 80}
_FACTOR = settings.default.max_examples / 100
_index = itertools.count()


def check(case, fuzz_root, fuzz_model):
    outcome = run_in_process(case, fuzz_root, fuzz_model, next(_index))
    if outcome.problems:
        saved = save_case(case, failures_folder() / f"{case.reader}-{abs(hash(repr(case))) % 10**8:08d}")
        pytest.fail(f"{case!r}\nexit {outcome.rc}, {outcome.seconds:.1f} s; saved to {saved}\n"
                    + "\n".join(outcome.problems) + f"\nstderr:\n{outcome.err[-2000:]}", pytrace=False)


def _reader_test(name):
    @settings(max_examples=max(1, int(CI_COUNTS[name] * _FACTOR)))
    @given(case=READERS[name]())
    def test(case, fuzz_root, fuzz_model):
        check(case, fuzz_root, fuzz_model)

    test.__name__ = f"test_fuzz_{name}"
    test.__doc__ = f"Hostile {name} inputs: invariants hold for every generated case."
    return test


test_fuzz_npz = _reader_test("npz")
test_fuzz_boxes = _reader_test("boxes")
test_fuzz_nifti = _reader_test("nifti")
test_fuzz_nrrd = _reader_test("nrrd")
test_fuzz_mha = _reader_test("mha")
test_fuzz_dicom = _reader_test("dicom")
test_fuzz_image = _reader_test("image")
test_fuzz_real = _reader_test("real")
