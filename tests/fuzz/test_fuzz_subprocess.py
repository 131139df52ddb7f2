"""Generated cases through the real CLI in a child process, as a user's batch: one `repmedsam-ov infer` over
the cases sampled from the in-process reader tests (every 17th: about 55 of every kind in the ci profile) and
the corpus must end by itself (no crash, abort or hang) with exit 0 or 1, count every input in its summary,
print nothing but its own lines on stderr (C++ libraries' chatter included), and leave no partial file and
nothing outside -o. Run alone, it replays the corpus only."""

from __future__ import annotations

from .corpus import corpus_cases, load_case_folder
from .harness import SAMPLED, run_batch_subprocess


def test_fuzz_batch_in_a_child_process(tmp_path, fuzz_model):
    cases = list(SAMPLED) + [load_case_folder(folder) for folder in corpus_cases()]
    problems, stats = run_batch_subprocess(cases, tmp_path, fuzz_model, timeout=600)
    assert not problems, "\n".join(problems)
    assert stats["cases"] == len(cases)
