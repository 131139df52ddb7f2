"""Rep-MedSAM = LiteMedSAM with a RepViT-M1.0 image encoder (official class name: MedSAM_Lite). The same
class holds LiteMedSAM itself (TinyViT encoder): the prompt encoder and mask decoder are identical."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .repvit import RepViT
from .tinyvit import TinyViT

IMAGE_SIZE = 256


class RepMedSAM(nn.Module):
    def __init__(self, image_encoder: RepViT | TinyViT, mask_decoder: MaskDecoder, prompt_encoder: PromptEncoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.prompt_encoder = prompt_encoder

    def forward(self, image: torch.Tensor, boxes: torch.Tensor):
        """image: (B, 3, 256, 256) in [0, 1]; boxes: (B, 1, 4) model space -> (logits (B,1,256,256), iou (B,1))."""
        return self.decode(self.image_encoder(image), boxes)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor):
        """embedding: (1 or B, 256, 64, 64); boxes: (B, 4) or (B, 1, 4) XYXY in model space (256 pixels)."""
        sparse, dense = self.prompt_encoder(boxes=boxes)
        return self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False)

    @staticmethod
    def postprocess_masks(masks: torch.Tensor, new_size: tuple[int, int], original_size: tuple[int, int]):
        """Crop (.., 256, 256) logits to the resized extent, then bilinear (half-pixel) to the original size."""
        masks = masks[..., : new_size[0], : new_size[1]]
        return F.interpolate(masks, size=original_size, mode="bilinear", align_corners=False)

    def fuse(self) -> "RepMedSAM":
        """Reparameterize the encoder in place (inference only)."""
        self.image_encoder.fuse()
        return self


def build_rep_medsam() -> RepMedSAM:
    """A Rep-MedSAM with random weights in the official (unfused) layout, in eval mode."""
    return RepMedSAM(RepViT(), MaskDecoder(), PromptEncoder()).eval()


def build_lite_medsam() -> RepMedSAM:
    """LiteMedSAM (TinyViT-5M encoder) with random weights in its checkpoint's layout, in eval mode."""
    return RepMedSAM(TinyViT(), MaskDecoder(), PromptEncoder()).eval()


# architecture name -> builder; the name is also the exported folder's model_type
BUILDERS = {"rep_medsam": build_rep_medsam, "litemedsam": build_lite_medsam}
