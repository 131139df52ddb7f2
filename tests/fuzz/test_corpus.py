"""Every case the fuzzer found a defect with (tests/fuzz/corpus/, see corpus.py) replayed through the same
invariants in this process (test_fuzz_subprocess.py also runs them in a child process)."""

from __future__ import annotations

import pytest

from .corpus import corpus_cases, load_case_folder
from .harness import run_in_process


@pytest.mark.parametrize("folder", corpus_cases(), ids=lambda p: p.name)
def test_corpus_case(folder, fuzz_root, fuzz_model):
    case = load_case_folder(folder)
    outcome = run_in_process(case, fuzz_root, fuzz_model, 900_000 + corpus_cases().index(folder))
    assert not outcome.problems, "\n".join(outcome.problems) + "\n" + outcome.err

