"""The bundled default model computes what its own torch checkpoint computes: the IR in models/rep_medsam
(fused encoder, fp16 weights) against the unfused float32 torch model built from the checkpoint that model.json
names, module by module and through whole cases (the torch reference pipeline, an independent implementation of
the inference semantics, against the C++ runtime)."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from repmedsam_export.checkpoint import load_checkpoint  # noqa: E402
from repmedsam_export.pipeline import ReferencePipeline, preprocess  # noqa: E402
from repmedsam_ov.bundled import (DEFAULT_MODEL, bundled_model_dir, bundled_models, model_card,  # noqa: E402
                                  torch_checkpoint)
from repmedsam_ov.io import load_case  # noqa: E402
from repmedsam_ov.metrics import label_agreement  # noqa: E402
from repmedsam_ov.segmenter import Segmenter  # noqa: E402

from ..conftest import REPO  # noqa: E402

FOLDER = bundled_model_dir("rep_medsam")
pytestmark = pytest.mark.skipif(FOLDER is None, reason="this build bundles no Rep-MedSAM")
EXAMPLES = sorted((REPO / "examples" / "imgs").glob("*.npz"))


@pytest.fixture(scope="module")
def torch_model():
    return load_checkpoint(torch_checkpoint(FOLDER))


def test_the_card_names_the_checkpoint_the_ir_was_exported_from():
    import hashlib

    card = model_card(FOLDER)
    path = torch_checkpoint(FOLDER)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["model_type"] == "rep_medsam" and card["torch_checkpoint"]["sha256"] == digest
    assert Segmenter("rep_medsam", precision="f32", threads=1).info["model_checkpoint_sha256"] == digest
    assert list(bundled_models())[0] == DEFAULT_MODEL == "rep_medsam"


@torch.no_grad()
def test_encoder_and_decoder_match_the_torch_checkpoint(torch_model):
    import openvino as ov

    case = load_case(EXAMPLES[0])
    image, _ = preprocess(case.imgs)
    core, f32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
    encoder = core.compile_model(FOLDER / "encoder.xml", "CPU", f32)
    decoder = core.compile_model(FOLDER / "decoder.xml", "CPU", f32)
    embedding = encoder({"image": image.numpy()})["embedding"]
    reference = torch_model.image_encoder(image).numpy()
    assert np.abs(embedding - reference).max() < 0.02 * np.abs(reference).max()
    boxes = np.array([[30, 40, 150, 170], [100, 20, 240, 120], [5, 5, 250, 250]], np.float32)
    logits = decoder({"embedding": embedding, "boxes": boxes})["low_res_logits"].reshape(3, 256, 256)
    ref_logits, _ = torch_model.decode(torch.from_numpy(reference), torch.from_numpy(boxes)[:, None])
    assert ((logits > 0) == (ref_logits[:, 0].numpy() > 0)).mean() >= 0.995


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_whole_cases_match_the_torch_reference_pipeline(path, torch_model):
    case = load_case(path)
    runtime = Segmenter("rep_medsam", precision="f32").segment(case)
    pipeline = ReferencePipeline(torch_model)
    reference = (pipeline.segment_3d if case.is_3d else pipeline.segment_2d)(case.imgs, case.boxes)
    assert np.mean(label_agreement(runtime, reference, len(case.boxes))) >= 0.99
