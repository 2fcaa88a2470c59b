"""ViT + linear head for image-level (multi-label) classification, pooled as in MAE fine-tuning."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .vit import ViT

__all__ = ["ViTClassifier"]


class ViTClassifier(nn.Module):
    """(B, C, *img) -> logits (B, num_classes).

    Global average pool of the patch tokens followed by `fc_norm` (MAE's `global_pool=True`), so the encoder has
    no final `norm` (a loaded `encoder.norm.*` is reported as unexpected, as in MAE). Position embeddings are
    learnable, initialised to sin-cos; `drop_path` is stochastic depth (0.1 for fine-tuning in the paper).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        img_size: int | Sequence[int],
        num_classes: int,
        patch_size: int | Sequence[int] = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.encoder = ViT(spatial_dims, in_channels, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
                           drop_path=drop_path, qkv_bias=qkv_bias, pos_embed="learnable", final_norm=False)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE fine-tuning: a near-zero head
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(x)  # (B, 1 + N, D), un-normed (final_norm=False)
        return self.head(self.fc_norm(tokens[:, 1:].mean(dim=1)))
