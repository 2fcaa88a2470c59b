"""Position embeddings of a ViT's patch grid, 2D or 3D (the role of facebookresearch/mae's util/pos_embed.py):
fixed sin-cos embeddings for any width, and resampling a learned or fixed embedding to another grid when weights
move between input sizes (ImageNet 2D -> 3D, another crop)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["interpolate_pos_embed", "sincos_pos_embed"]


def sincos_pos_embed(grid: Sequence[int], dim: int, cls_token: bool = True, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed sin-cos position embedding for a 2D or 3D patch grid and ANY width `dim`: (1, [1 +] N, dim).

    MAE/MONAI give each axis dim/4 (2D) or dim/6 (3D) frequencies and so need dim divisible by 4 or 6. Here the
    dim // 2 sin/cos frequency pairs are shared out over the axes as evenly as possible (earlier axes get the
    extra pair) and an odd last channel is zero. For dim divisible by 2 * len(grid) this is MAE's embedding
    (axes in array order, each [sin | cos]). The class token's row is zero.
    """
    d = len(grid)
    pairs = [dim // 2 // d + (i < (dim // 2) % d) for i in range(d)]
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    parts = []
    for pos, f in zip(coords, pairs):
        omega = 1.0 / temperature ** (torch.arange(f, dtype=torch.float64) / max(f, 1))
        angle = pos.reshape(-1, 1) * omega
        parts += [angle.sin(), angle.cos()]
    emb = torch.cat(parts, dim=1)
    emb = F.pad(emb, (0, dim - emb.shape[1]))
    if cls_token:
        emb = F.pad(emb, (0, 0, 1, 0))
    return emb.float().unsqueeze(0)


def interpolate_pos_embed(
    pos_embed: torch.Tensor, src_grid: Sequence[int], dst_grid: Sequence[int], num_prefix: int = 1
) -> torch.Tensor:
    """Resample a (1, num_prefix + prod(src_grid), D) position embedding to `dst_grid`.

    2D -> 2D bicubic, 3D -> 3D trilinear, 2D -> 3D: bicubic to the in-plane grid (the first two axes, MONAI's
    H, W) and the same embedding repeated along depth (the last axis). Prefix tokens (class token) are kept.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    prefix, grid_tokens = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = pos_embed.shape[-1]
    if grid_tokens.shape[1] != math.prod(src_grid):
        raise ValueError(f"pos_embed has {grid_tokens.shape[1]} grid tokens, grid {src_grid} needs {math.prod(src_grid)}.")
    if src_grid == dst_grid:
        return pos_embed
    if not (len(src_grid) == len(dst_grid) or (len(src_grid), len(dst_grid)) == (2, 3)):
        raise ValueError(f"cannot interpolate a {len(src_grid)}D position embedding to a {len(dst_grid)}D grid.")
    x = grid_tokens.float().reshape(1, *src_grid, dim).movedim(-1, 1)  # (1, D, *src_grid)
    if len(src_grid) == 2:
        x = F.interpolate(x, size=dst_grid[:2], mode="bicubic", align_corners=False)
        if len(dst_grid) == 3:
            x = x.unsqueeze(-1).expand(*x.shape, dst_grid[2])
    else:
        x = F.interpolate(x, size=dst_grid, mode="trilinear", align_corners=False)
    x = x.movedim(1, -1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, x], dim=1)
