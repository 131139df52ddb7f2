"""benchmarks/model_card_eval.py's ship-bar check (issue 11's bar) on hand-made per-source scores."""

import importlib.util

import pytest

from ..conftest import REPO

spec = importlib.util.spec_from_file_location("model_card_eval", REPO / "benchmarks" / "model_card_eval.py")
model_card_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_card_eval)


def records(scores: dict[str, dict[str, float]]) -> list[dict]:
    return [{"engine": e, "source": s, "dsc": d} for e, by_source in scores.items() for s, d in by_source.items()]


TEACHER = {"A": 0.90, "B": 0.50, "all (per-case mean)": 0.729}
BASELINE = {"A": 0.80, "B": 0.60, "all (per-case mean)": 0.690}


def failures(candidate: dict[str, float]) -> list[str]:
    scores = {"cand": candidate, "teach": TEACHER, "fill": BASELINE}
    return model_card_eval.ship_bar_failures(records(scores), "cand", "teach", "fill")


def test_a_candidate_within_the_margins_ships():
    # B is 0.049 below the teacher and below box-fill, which the teacher is too: allowed
    assert failures({"A": 0.86, "B": 0.451, "all (per-case mean)": 0.7195}) == []


def test_each_criterion_fails_on_its_own():
    mean = failures({"A": 0.90, "B": 0.50, "all (per-case mean)": 0.718})
    assert len(mean) == 1 and mean[0].startswith("all (per-case mean)")
    source = failures({"A": 0.849, "B": 0.50, "all (per-case mean)": 0.729})
    assert len(source) == 1 and source[0].startswith("A:") and "0.05 below" in source[0]


def test_falling_to_box_fill_where_the_teacher_beats_it_fails_even_within_the_margin():
    # A: teacher 0.90 beats box-fill 0.80; a candidate at 0.80 is not above it (and 0.10 below the teacher)
    teacher_close = {"A": 0.82, "B": 0.50, "all (per-case mean)": 0.729}
    scores = {"cand": {"A": 0.80, "B": 0.50, "all (per-case mean)": 0.729}, "teach": teacher_close, "fill": BASELINE}
    got = model_card_eval.ship_bar_failures(records(scores), "cand", "teach", "fill")
    assert len(got) == 1 and "not above fill" in got[0]


def test_mark_bf16_needs_the_model_and_the_bf16_agreement(monkeypatch, tmp_path, capsys):
    for extra in ([], ["-m", str(tmp_path)], ["--agreement", "runtime-bf16:runtime-f32"]):
        argv = ["model_card_eval.py", str(tmp_path), "--out", str(tmp_path / "out"), "--mark-bf16", *extra]
        monkeypatch.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as e:
            model_card_eval.main()
        assert e.value.code == 2 and "--mark-bf16 needs -m MODEL_DIR" in capsys.readouterr().err
