"""Masked autoencoder (He et al. 2022) on our 2D/3D ViT, after facebookresearch/mae `models_mae.py`.

Masking, norm-pix targets, the masked MSE and the figures' `reconstruct` are the shared core in `mim.py`.
Shapes: x (B, C, *img); N = number of patches, K = N - round(N * mask_ratio) visible ones, P = prod(patch) * C.
Why it is faster than MONAI's MaskedAutoEncoderViT: the random masking is an argsort of uniform noise on the
input's device (MONAI draws torch.multinomial on the CPU), only the K visible patches are embedded and encoded,
mask tokens are put in place with one gather, and attention is PyTorch's fused SDPA.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from . import mim
from .mim import random_masking
from .pos_embed import sincos_pos_embed
from .vit import ViT, Block, from_patches, init_weights, to_patches

__all__ = ["MAE", "random_masking"]


class MAE(nn.Module):
    """Masked autoencoder: ViT encoder on visible patches, a light transformer decoder over all patches.

    Args:
        spatial_dims, in_channels, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio: the encoder
            (a `ViT` with fixed sin-cos position embeddings, `.encoder`).
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder (its own fixed sin-cos embedding).
        mask_ratio: fraction of patches hidden (paper: 0.75 in 2D, 0.125 for its best 3D rows).
        norm_pix_loss: regress per-patch normalised pixels (MAE default, on).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        img_size: int | Sequence[int],
        patch_size: int | Sequence[int] = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        decoder_embed_dim: int = 256,
        decoder_depth: int = 8,
        decoder_num_heads: int = 8,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = ViT(spatial_dims, in_channels, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
                           qkv_bias=qkv_bias, pos_embed="sincos")
        self.mask_ratio, self.norm_pix_loss = mim.check_ratio(mask_ratio), bool(norm_pix_loss)
        self.patch_size, self.grid = self.encoder.patch_size, self.encoder.grid
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(self.grid, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, in_channels * math.prod(self.patch_size))
        init_weights(nn.ModuleList([self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]))
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *img) -> (B, N, prod(patch) * C), MAE's layout."""
        return to_patches(x, self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, prod(patch) * C) -> (B, C, *img)."""
        return from_patches(patches, self.patch_size, self.grid)

    def forward_encoder(self, x: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns latent (B, 1 + K, D), mask (B, N), ids_restore (B, N)."""
        ids_keep, ids_restore, mask = random_masking(x.shape[0], self.encoder.num_patches, mask_ratio, x.device)
        return self.encoder(x, ids_keep=ids_keep), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, D) -> predictions (B, N, P) for every patch in raster order."""
        x = self.decoder_embed(latent)
        b, k1, d = x.shape
        n = ids_restore.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.to(x.dtype).expand(b, n + 1 - k1, d)], dim=1)  # [visible, hidden]
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))  # raster order
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x[:, 1:]))

    def target(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Regression target (B, N, P) in fp32 and the per-patch mean/std (B, N, 1) it was normalised with."""
        return mim.patch_targets(x, self.patch_size, self.norm_pix_loss)

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the hidden patches only, in fp32 whatever the autocast dtype."""
        return mim.masked_mse(pred, self.target(x)[0], mask)

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, *img) -> (loss (), pred (B, N, P), mask (B, N) with 1 = hidden)."""
        latent, mask, ids_restore = self.forward_encoder(x, self.mask_ratio if mask_ratio is None else mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.loss(x, pred, mask), pred, mask

    def reconstruct(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images for figures shaped like x: masked, recon, pasted, error (`mim.reconstruct`)."""
        return mim.reconstruct(x, pred, mask, self.patch_size, self.grid, self.norm_pix_loss)
