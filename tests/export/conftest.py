import pytest

torch = pytest.importorskip("torch")

from repmedsam_export import load_checkpoint  # noqa: E402

from ..conftest import GOLDEN_CKPT, SHARED  # noqa: E402

TRAIN = SHARED / "data" / "train"


@pytest.fixture(scope="session")
def golden_model():
    """The golden random checkpoint in the unfused (official) layout; do not modify it in a test."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return load_checkpoint(GOLDEN_CKPT)


@pytest.fixture(scope="session")
def golden_model_fused():
    return load_checkpoint(GOLDEN_CKPT).fuse()


@pytest.fixture(scope="session")
def train_cache(tmp_path_factory):
    """A training cache of 6 images drawn round-robin across sources (distillation and device tests)."""
    from repmedsam_export.train.data import build_cache, open_source, select_subset

    if not TRAIN.is_dir():
        pytest.skip(f"{TRAIN}: training data not found")
    folder = open_source(TRAIN)
    return build_cache(folder, tmp_path_factory.mktemp("cache") / "c.npz", select_subset(folder.items, 6))
