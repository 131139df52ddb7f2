"""Rep-MedSAM (and its teacher LiteMedSAM) in PyTorch, one module per file; names match the official
state_dicts."""

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .rep_medsam import BUILDERS, IMAGE_SIZE, RepMedSAM, build_lite_medsam, build_rep_medsam
from .repvit import RepViT
from .tinyvit import TinyViT

__all__ = ["BUILDERS", "IMAGE_SIZE", "MaskDecoder", "PromptEncoder", "RepMedSAM", "RepViT", "TinyViT",
           "build_lite_medsam", "build_rep_medsam"]
