"""benchmarks/card_rules.py (issue 27's ship bar and precision rule, issue 28's bar, auto's measured choice) on
hand-made scores, and model_card_eval.py's argument checks."""

import importlib.util
import sys

import pytest

from ..conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # as when the script runs: card_rules beside it
spec = importlib.util.spec_from_file_location("model_card_eval", REPO / "benchmarks" / "model_card_eval.py")
model_card_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_card_eval)
import card_rules  # noqa: E402


def records(scores: dict[str, dict[str, float]], key: str = "dsc") -> list[dict]:
    return [{"engine": e, "source": s, key: d} for e, by_source in scores.items() for s, d in by_source.items()]


OVER = card_rules.OVER_SOURCES
TEACHER = {"2D/A": 0.90, "2D/B": 0.50, "CT/C": 0.60, OVER: 0.667}


def failures(candidate: dict[str, float], **bar) -> list[str]:
    return card_rules.ship_bar_failures(records({"cand": candidate, "teach": TEACHER}), "cand", "teach", **bar)


def test_a_candidate_within_the_margins_ships():
    # 2D/A 0.029 below the teacher, CT 0.2 below (issue 27 does not bound 3D sources), mean 0.03 above
    assert failures({"2D/A": 0.871, "2D/B": 0.80, "CT/C": 0.40, OVER: 0.698}) == []


def test_each_criterion_fails_on_its_own():
    mean = failures({"2D/A": 0.90, "2D/B": 0.60, "CT/C": 0.60, OVER: 0.696})
    assert len(mean) == 1 and mean[0].startswith(OVER) and "+ 0.03" in mean[0]
    source = failures({"2D/A": 0.869, "2D/B": 0.70, "CT/C": 0.60, OVER: 0.723})
    assert len(source) == 1 and source[0].startswith("2D/A:") and "0.03 below" in source[0]


def test_the_v1_bar_bounds_3d_sources_and_asks_more_of_the_mean():
    v1 = dict(mean_margin=0.05, margin_3d=0.02)
    assert failures({"2D/A": 0.90, "2D/B": 0.70, "CT/C": 0.581, OVER: 0.727}, **v1) == []
    got = failures({"2D/A": 0.90, "2D/B": 0.70, "CT/C": 0.579, OVER: 0.716}, **v1)
    assert [f.split(":")[0] for f in got] == [OVER, "CT/C"]


def test_precision_rule_bounds_every_source_s_dsc_and_nsd_both_ways():
    f32 = {"2D/A": 0.90, "CT/C": 0.60}
    dsc = records({"f32": f32, "bf16": {"2D/A": 0.909, "CT/C": 0.591}})
    nsd = records({"f32": f32, "bf16": {"2D/A": 0.90, "CT/C": 0.60}}, key="nsd")
    merged = [a | b for a, b in zip(dsc, nsd)]
    assert card_rules.precision_rule_failures(merged, "bf16", "f32") == []
    worse = records({"f32": f32, "bf16": {"2D/A": 0.90, "CT/C": 0.58}}, key="nsd")
    got = card_rules.precision_rule_failures([a | b for a, b in zip(dsc, worse)], "bf16", "f32")
    assert len(got) == 1 and got[0].startswith("CT/C: NSD 0.580")
    better = records({"f32": f32, "bf16": {"2D/A": 0.92, "CT/C": 0.60}})  # more than 0.01 away either way
    assert card_rules.precision_rule_failures([a | b for a, b in zip(better, nsd)], "bf16", "f32")


def test_mark_bf16_needs_the_model_and_the_bf16_agreement(monkeypatch, tmp_path, capsys):
    for extra in ([], ["-m", str(tmp_path)], ["--agreement", "runtime-bf16:runtime-f32"]):
        argv = ["model_card_eval.py", str(tmp_path), "--out", str(tmp_path / "out"), "--mark-bf16",
                "--engines", "runtime-bf16,runtime-f32", *extra]
        monkeypatch.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as e:
            model_card_eval.main()
        assert e.value.code == 2 and "--mark-bf16 needs -m MODEL_DIR" in capsys.readouterr().err


def case_rows(engine: str, scores: dict[str, float], seconds: float) -> list[dict]:
    return [{"case": case, "engine": engine, "seconds": seconds, "dsc": d, "nsd": d} for case, d in scores.items()]


CASES = {"2DBox_US_BUSI_a": 0.90, "2DBox_US_BUSI_b": 0.80, "3DBox_CT_x_c": 0.60}


def test_source_records_average_cases_then_sources():
    records = card_rules.source_records(case_rows("e", CASES, 2.0), ["e"])
    by = {r["source"]: r for r in records}
    assert by["US/BUSI"]["dsc"] == pytest.approx(0.85) and by["CT/x"]["cases"] == 1
    assert by["all (per-case mean)"]["dsc"] == pytest.approx(0.7667, abs=1e-4)
    assert by[OVER]["dsc"] == pytest.approx(0.725) and by[OVER]["seconds"] == 6.0


def test_auto_picks_the_fastest_candidate_within_the_rule_and_mixes_bf16_2d():
    rows = (case_rows("m-f32", CASES, 3.0)
            + case_rows("m-bf16", CASES | {"3DBox_CT_x_c": 0.55}, 1.0)  # fast, but its 3D walk drifts
            + case_rows("m-bf16-encoder", CASES | {"3DBox_CT_x_c": 0.605}, 2.0)
            + case_rows("m-int8", CASES | {"2DBox_US_BUSI_a": 0.85}, 0.5))  # fastest, off by 0.025 on BUSI
    choices, report = card_rules.auto_choices(rows, "m")
    # bf16-2d: the 2D cases of bf16 (1 s each) and the 3D case of bf16-encoder (2 s): 4 s, inside the rule
    assert choices == {"amx": "bf16-2d", "avx512_bf16": "bf16-2d", "other": "f32"}
    assert [line.split(":")[0] for line in report] == ["m-int8", "m-bf16", "m-bf16-2d", "m-bf16-encoder", "m-f32"]
    assert "not allowed" in report[0] and "CT/x: DSC 0.550" in report[1] and report[2].endswith("allowed")
    rows = [r for r in rows if r["engine"] != "m-int8"] + case_rows("m-int8", CASES, 0.5)
    assert card_rules.auto_choices(rows, "m")[0] == {"amx": "int8", "avx512_bf16": "int8", "other": "int8"}
