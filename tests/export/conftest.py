import pytest

torch = pytest.importorskip("torch")

from repmedsam_export import load_checkpoint  # noqa: E402

from ..conftest import GOLDEN_CKPT  # noqa: E402


@pytest.fixture(scope="session")
def golden_model():
    """The golden random checkpoint in the unfused (official) layout; do not modify it in a test."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return load_checkpoint(GOLDEN_CKPT)


@pytest.fixture(scope="session")
def golden_model_fused():
    return load_checkpoint(GOLDEN_CKPT).fuse()
