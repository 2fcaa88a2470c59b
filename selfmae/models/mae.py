"""Masked autoencoder (He et al. 2022) on our 2D/3D ViT, after facebookresearch/mae `models_mae.py`.

Shapes: x (B, C, *img); N = number of patches, K = N - round(N * mask_ratio) visible ones, P = prod(patch) * C.
Why it is faster than MONAI's MaskedAutoEncoderViT: the random masking is an argsort of uniform noise on the
input's device (MONAI draws torch.multinomial on the CPU), only the K visible patches are embedded and encoded,
mask tokens are put in place with one gather, and attention is PyTorch's fused SDPA.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vit import ViT, Block, from_patches, init_weights, sincos_pos_embed, to_patches

__all__ = ["MAE", "random_masking"]


def random_masking(batch: int, num_patches: int, mask_ratio: float, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by sorting uniform noise, all on `device`.

    Returns ids_keep (B, K) int64 (visible patches, in random order), ids_restore (B, N) int64 (the inverse
    permutation: position of each patch in [visible, hidden] order) and mask (B, N) float32, 1 = hidden.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio is the fraction of patches hidden and must be in [0, 1), got {mask_ratio}.")
    keep = num_patches - int(round(num_patches * mask_ratio))
    keep = max(keep, 1)
    noise = torch.rand(batch, num_patches, device=device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = (ids_restore >= keep).float()
    return ids_shuffle[:, :keep], ids_restore, mask


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
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio is the fraction of patches hidden and must be in [0, 1), got {mask_ratio}.")
        self.encoder = ViT(spatial_dims, in_channels, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
                           qkv_bias=qkv_bias, pos_embed="sincos")
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
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
        t = self.patchify(x.float())
        if not self.norm_pix_loss:
            return t, torch.zeros_like(t[..., :1]), torch.ones_like(t[..., :1])
        var, mean = torch.var_mean(t, dim=-1, keepdim=True)
        std = (var + 1e-6).sqrt()
        return (t - mean) / std, mean, std

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the hidden patches only, in fp32 whatever the autocast dtype."""
        per_patch = (pred.float() - self.target(x)[0]).pow(2).mean(dim=-1)  # (B, N)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, *img) -> (loss (), pred (B, N, P), mask (B, N) with 1 = hidden)."""
        latent, mask, ids_restore = self.forward_encoder(x, self.mask_ratio if mask_ratio is None else mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.loss(x, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images for figures, each shaped like x (fp32).

        masked: the input with hidden patches zeroed; recon: the prediction for every patch; pasted: visible input
        + predicted hidden patches; error: |pasted - x| (zero on visible patches).
        With norm_pix_loss the prediction is in per-patch normalised units. Visible patches are de-normalised with
        their own mean/std; a hidden one with the mean/std of the visible patches around it (`neighbour_stats`),
        so the figure shows anatomy at its local brightness and never leaks statistics of what was hidden.
        """
        _, mean, std = self.target(x)
        mean, std = display_stats(mean, std, mask, self.grid)
        recon = self.unpatchify(pred.float() * std + mean)
        hidden = self.unpatchify(mask.float().unsqueeze(-1).expand(-1, -1, pred.shape[-1]))
        x = x.float()
        pasted = torch.lerp(x, recon, hidden)
        return {"masked": x * (1 - hidden), "recon": recon, "pasted": pasted, "error": (pasted - x).abs()}


def display_stats(mean: torch.Tensor, std: torch.Tensor, mask: torch.Tensor, grid: Sequence[int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean/std to de-normalise a norm-pix prediction with for display: a visible patch keeps its own, a hidden
    one (mask 1) takes its visible neighbours' (`neighbour_stats`). mean, std: (B, N, 1); mask: (B, N)."""
    hid = mask.bool().unsqueeze(-1)
    return (torch.where(hid, neighbour_stats(mean, ~hid, grid), mean),
            torch.where(hid, neighbour_stats(std, ~hid, grid), std))


def neighbour_stats(stat: torch.Tensor, visible: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Per patch, the mean of `stat` over the VISIBLE patches in its 3x3(x3) neighbourhood on the patch grid,
    widened to 5, 7, ... patches where none is visible, and the image's visible mean as the last resort.

    stat, visible: (B, N, 1) with N = prod(grid) (visible: bool); returns (B, N, 1) fp32. Used to draw a hidden
    patch's normalised prediction at the brightness of what surrounds it (MAE's norm-pix targets carry no
    mean/std of their own).
    """
    b = stat.shape[0]
    pool = F.avg_pool3d if len(grid) == 3 else F.avg_pool2d
    w = visible.float().reshape(b, 1, *grid)
    v = stat.float().reshape(b, 1, *grid) * w
    out = (v.flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)).reshape(b, *([1] * (len(grid) + 1)))
    out = out.expand_as(v).clone()
    found = torch.zeros_like(w, dtype=torch.bool)
    for k in range(3, 2 * max(grid) + 2, 2):
        pad = [k // 2] * (2 * len(grid))   # zero padding done here: pooling refuses a kernel wider than the grid
        num, den = pool(F.pad(v, pad), k, 1), pool(F.pad(w, pad), k, 1)
        new = (den > 0) & ~found
        out = torch.where(new, num / den.clamp_min(1e-12), out)
        found |= new
        if bool(found.all()):
            break
    return out.reshape(b, -1, 1)
