"""Losses of the paper (LiteMedSAM's): Dice + BCE on the mask logits plus IoU regression; MSE for distillation.

All are computed in float32 whatever the autocast dtype of the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "achieved_iou", "segmentation_loss", "teacher_mask_loss", "distillation_loss"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MONAI DiceLoss(sigmoid=True, squared_pred=True): mean over samples of
    1 - (2·Σpg + eps) / (Σp² + Σg² + eps). logits, target: (B, 1, H, W)."""
    p = torch.sigmoid(logits).flatten(1)
    g = target.flatten(1)
    return (1 - (2 * (p * g).sum(1) + eps) / ((p * p).sum(1) + (g * g).sum(1) + eps)).mean()


@torch.no_grad()
def achieved_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction (sigmoid > 0.5) with the target: (B, 1). An empty union counts as 1."""
    pred, ref = logits.flatten(1) > 0, target.flatten(1) > 0.5
    inter = (pred & ref).sum(1).float()
    union = (pred | ref).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).unsqueeze(1)


def segmentation_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
                      weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> dict[str, torch.Tensor]:
    """logits (B,1,256,256), iou_pred (B,1), target (B,1,256,256) in {0,1}.

    -> {"loss", "dice", "bce", "iou"}: loss = w0·dice + w1·bce + w2·MSE(iou_pred, achieved IoU).
    """
    logits, iou_pred = logits.float(), iou_pred.float()
    dice = dice_loss(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    iou = F.mse_loss(iou_pred, achieved_iou(logits, target))
    loss = weights[0] * dice + weights[1] * bce + weights[2] * iou
    return {"loss": loss, "dice": dice.detach(), "bce": bce.detach(), "iou": iou.detach()}


def teacher_mask_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """BCE of the student's mask logits against the teacher's mask probabilities, both (B, 1, 256, 256): keeps
    the teacher's behaviour where the labelled data are thin (knowledge distillation on the output)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.sigmoid(teacher_logits.float()))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, margin: int = 0) -> dict[str, torch.Tensor]:
    """MSE between student and teacher image embeddings, both (B, 256, h, w), over the cells at least `margin`
    from each side (for crops: a crop's border cells cannot see what the teacher saw beyond it)."""
    if margin:
        student, teacher = (t[..., margin:-margin, margin:-margin] for t in (student, teacher))
    loss = F.mse_loss(student.float(), teacher.float())
    return {"loss": loss, "mse": loss.detach()}
