"""repmedsam-ov: Rep-MedSAM box-prompted segmentation of medical images on laptop CPUs.

The user package: numpy, OpenCV and the C++ OpenVINO runtime only; it never imports torch.
"""

from .errors import Cancelled, InputError, ModelError
from .io import Case, load_case, save_segs
from .segmenter import Segmenter
from .session import Progress, Session

__version__ = "0.1.0"

__all__ = ["Cancelled", "Case", "InputError", "ModelError", "Progress", "Segmenter", "Session", "load_case", "save_segs",
           "__version__"]
