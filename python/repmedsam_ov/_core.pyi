"""Type stubs of the private C++ extension `repmedsam_ov._core` (OpenVINO runtime). Use repmedsam_ov.Segmenter."""

import numpy as np
import numpy.typing as npt

__version__: str

def openvino_version() -> str: ...
def available_devices() -> list[str]: ...
def auto_precision(model_dir: str = "") -> tuple[str, str]:
    """(precision, reason): what precision "auto" picks on this CPU for a model folder ("" = none)."""

# Test hooks for the C++ pre- and postprocessing (reference semantics, ARCHITECTURE.md §2).
def resize_area(image: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for uint8 (H, W[, C]) images."""
def preprocess(image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], tuple[int, int]]:
    """uint8 (H, W) or (H, W, 3) -> (float32 (3, 256, 256) encoder input, (new_h, new_w))."""
def upsample(logits: npt.NDArray[np.float32], new_h: int, new_w: int, height: int,
             width: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """float32 (256, 256) logits -> (float32 (H, W) bilinear values, bool (H, W) mask = value > 0)."""
def resized_extent(height: int, width: int) -> tuple[int, int]:
    """(new_h, new_w) of the longest-side-256 resize."""
def scale_box(box: list[float], height: int, width: int) -> list[int]:
    """Pixel box [x0, y0, x1, y1] of an (height, width) image -> model-space box."""
def mask_box(mask: npt.NDArray[np.uint8]) -> list[int] | None:
    """The 3D walk's next prompt from a uint8 (H, W) label slice, or None when its resize is empty."""

class EmbeddingStore:
    """Slice embeddings of one image or volume kept between segment calls (owned copies, LRU-bounded)."""

    def __init__(self, max_slices: int) -> None: ...
    @property
    def encoded(self) -> int: ...

class Progress:
    """Progress of one segment call: decoder steps done; cancel() makes the call raise repmedsam_ov.Cancelled."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def steps(self) -> int: ...

class Segmenter:
    """Compiled Rep-MedSAM encoder and decoder. Raises repmedsam_ov.ModelError / InputError."""

    def __init__(self, model_dir: str, precision: str = "auto", threads: int = 0, streams: int = 0,
                 cache_dir: str = "", max_cached_slices: int = 256, decoder_batch: int = 8) -> None: ...
    def segment_2d(self, image: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64],
                   store: EmbeddingStore | None = None, progress: Progress | None = None) -> tuple[np.ndarray, dict]:
        """uint8 (H, W[, 3]) C-contiguous image, (N, 4) boxes -> (labels (H, W) uint8|uint16, trace dict)."""
    def segment_3d(self, volume: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64],
                   store: EmbeddingStore | None = None, progress: Progress | None = None) -> tuple[np.ndarray, dict]:
        """uint8 (D, H, W) C-contiguous volume, (N, 6) boxes -> (labels (D, H, W) uint8|uint16, trace dict)."""
    def describe(self) -> dict[str, str]:
        """Model folder, resolved precision, threading and the model's rt_info."""
    def time_networks(self, repeats: int = 5) -> dict[str, float]:
        """Median seconds of one inference with every thread on one stream: "encoder" (one image); per box
        "decoder_2d"/"decoder_3d" (one box a call) and "decoder_2d_batched"/"decoder_3d_batched"
        (decoder_batch boxes a call)."""
