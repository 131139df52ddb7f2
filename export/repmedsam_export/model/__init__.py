"""The Rep-MedSAM model in PyTorch, one module per file; names match the official state_dict."""

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .rep_medsam import IMAGE_SIZE, RepMedSAM, build_rep_medsam
from .repvit import RepViT

__all__ = ["IMAGE_SIZE", "MaskDecoder", "PromptEncoder", "RepMedSAM", "RepViT", "build_rep_medsam"]
