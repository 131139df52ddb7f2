"""repmedsam_export: the torch side of repmedsam-ov (model, checkpoints, reparameterization, export, training).

Only this package imports torch or nncf; the user package `repmedsam_ov` never does.
"""

from .checkpoint import load_checkpoint
from .model import RepMedSAM, build_rep_medsam

__all__ = ["RepMedSAM", "build_rep_medsam", "load_checkpoint"]
