"""benchmarks/model_card_eval.py's checks (issue 27's ship bar and precision rule, issue 28's bar) on hand-made
per-source scores."""

import importlib.util

import pytest

from ..conftest import REPO

spec = importlib.util.spec_from_file_location("model_card_eval", REPO / "benchmarks" / "model_card_eval.py")
model_card_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_card_eval)


def records(scores: dict[str, dict[str, float]], key: str = "dsc") -> list[dict]:
    return [{"engine": e, "source": s, key: d} for e, by_source in scores.items() for s, d in by_source.items()]


OVER = model_card_eval.OVER_SOURCES
TEACHER = {"2D/A": 0.90, "2D/B": 0.50, "CT/C": 0.60, OVER: 0.667}


def failures(candidate: dict[str, float], **bar) -> list[str]:
    return model_card_eval.ship_bar_failures(records({"cand": candidate, "teach": TEACHER}), "cand", "teach", **bar)


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
    assert model_card_eval.precision_rule_failures(merged, "bf16", "f32") == []
    worse = records({"f32": f32, "bf16": {"2D/A": 0.90, "CT/C": 0.58}}, key="nsd")
    got = model_card_eval.precision_rule_failures([a | b for a, b in zip(dsc, worse)], "bf16", "f32")
    assert len(got) == 1 and got[0].startswith("CT/C: NSD 0.580")
    better = records({"f32": f32, "bf16": {"2D/A": 0.92, "CT/C": 0.60}})  # more than 0.01 away either way
    assert model_card_eval.precision_rule_failures([a | b for a, b in zip(better, nsd)], "bf16", "f32")


def test_mark_bf16_needs_the_model_and_the_bf16_agreement(monkeypatch, tmp_path, capsys):
    for extra in ([], ["-m", str(tmp_path)], ["--agreement", "runtime-bf16:runtime-f32"]):
        argv = ["model_card_eval.py", str(tmp_path), "--out", str(tmp_path / "out"), "--mark-bf16",
                "--engines", "runtime-bf16,runtime-f32", *extra]
        monkeypatch.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as e:
            model_card_eval.main()
        assert e.value.code == 2 and "--mark-bf16 needs -m MODEL_DIR" in capsys.readouterr().err
