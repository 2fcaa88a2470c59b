"""One Vision Transformer for 2D and 3D, shared by MAE pre-training, classification and UNETR.

Parameter names follow timm / facebookresearch/mae (`patch_embed.proj.*`, `cls_token`, `pos_embed`,
`blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`), so that every model holding a ViT under
`.encoder` exchanges weights with the others and with ImageNet ViT-B/16 files by a plain prefix.

Conventions: images are (B, C, *spatial) with `spatial_dims` 2 or 3 axes; tokens are (B, N, D) in raster order of
the patch grid (first spatial axis slowest), exactly as `ConvNd(...).flatten(2).transpose(1, 2)` would give; the
class token is token 0 and `pos_embed` is (1, 1 + N, D) with a zero row for it (MAE convention).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .pos_embed import sincos_pos_embed

__all__ = [
    "ViT",
    "Block",
    "PatchEmbed",
    "to_patches",
    "from_patches",
    "check_geometry",
]


def _tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """`value` repeated to an `n`-tuple (MONAI's ensure_tuple_rep, with a message that names the argument)."""
    out = tuple(int(v) for v in value) if isinstance(value, Sequence) else (int(value),) * n
    if len(out) != n:
        raise ValueError(f"{name}={value} must have {n} entries for spatial_dims={n}.")
    return out


def check_geometry(
    spatial_dims: int, img_size: int | Sequence[int], patch_size: int | Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Validate and normalise image/patch sizes; returns (img_size, patch_size, grid) as tuples."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    img = _tuple(img_size, spatial_dims, "img_size")
    patch = _tuple(patch_size, spatial_dims, "patch_size")
    if any(p <= 0 for p in patch) or any(s % p for s, p in zip(img, patch)):
        raise ValueError(f"img_size={img} must be divisible by patch_size={patch} along every axis.")
    return img, patch, tuple(s // p for s, p in zip(img, patch))


def _patch_permutation(d: int, channel_last: bool) -> tuple[int, ...]:
    """Axis order taking (B, C, g1, p1, ..., gd, pd) to (B, g1..gd, [C,] p1..pd [, C])."""
    grid_axes = tuple(2 + 2 * i for i in range(d))
    patch_axes = tuple(3 + 2 * i for i in range(d))
    return (0, *grid_axes, *patch_axes, 1) if channel_last else (0, *grid_axes, 1, *patch_axes)


def to_patches(x: torch.Tensor, patch_size: Sequence[int], channel_last: bool = True) -> torch.Tensor:
    """(B, C, *spatial) -> (B, N, prod(patch) * C), one row per patch in raster order.

    `channel_last=True` is MAE's `patchify` layout (pixels of a patch, channel fastest); `channel_last=False`
    matches a ConvNd weight flattened as (D, C * prod(patch)), which the patch embedding uses.
    """
    b, c, *spatial = x.shape
    d = len(patch_size)
    if len(spatial) != d or any(s % p for s, p in zip(spatial, patch_size)):
        raise ValueError(f"input spatial shape {tuple(spatial)} is not a multiple of patch_size {tuple(patch_size)}.")
    split = [b, c]
    for s, p in zip(spatial, patch_size):
        split += [s // p, p]
    n = math.prod(s // p for s, p in zip(spatial, patch_size))
    return x.reshape(split).permute(_patch_permutation(d, channel_last)).reshape(b, n, -1)


def from_patches(
    patches: torch.Tensor, patch_size: Sequence[int], grid: Sequence[int], channel_last: bool = True
) -> torch.Tensor:
    """Inverse of `to_patches`: (B, N, prod(patch) * C) -> (B, C, *grid * patch)."""
    b, n, k = patches.shape
    d, p = len(patch_size), math.prod(patch_size)
    if n != math.prod(grid) or k % p:
        raise ValueError(f"patches of shape {tuple(patches.shape)} do not fit grid {tuple(grid)} x patch {tuple(patch_size)}.")
    c = k // p
    perm = _patch_permutation(d, channel_last)
    shape = [b, *grid, *patch_size, c] if channel_last else [b, *grid, c, *patch_size]
    inverse = [perm.index(i) for i in range(len(perm))]
    x = patches.reshape(shape).permute(inverse)  # (B, C, g1, p1, ..., gd, pd)
    return x.reshape(b, c, *(g * q for g, q in zip(grid, patch_size)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, for any channel count, 2D or 3D: (B, C, *img) -> (B, N, D).

    `proj` is a ConvNd with kernel = stride = patch so its weight keeps the (D, C, *patch) layout of timm and
    MONAI checkpoints, but it is applied as one matmul on the patch matrix: equal to the convolution, faster
    on CPU, and it lets the MAE embed only the visible patches (`ids_keep`).
    """

    def __init__(self, spatial_dims: int, in_channels: int, patch_size: Sequence[int], embed_dim: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        self.patch_size = tuple(patch_size)
        conv = (nn.Conv2d, nn.Conv3d)[spatial_dims - 2]
        self.proj = conv(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        patches = to_patches(x, self.patch_size, channel_last=False)  # (B, N, C * P)
        if ids_keep is not None:  # (B, K) -> embed only the kept patches
            patches = torch.gather(patches, 1, ids_keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection; the kernel is `attention.attention`'s choice."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} must be divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = attention(q, k, v)  # (B, H, N, d/H)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random fraction `p` of samples, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep.div_(1.0 - p)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each branch with drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (patch embedding as a linear), zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, PatchEmbed):
            nn.init.xavier_uniform_(m.proj.weight.view(m.proj.weight.shape[0], -1))
            nn.init.zeros_(m.proj.bias)


class ViT(nn.Module):
    """Vision Transformer encoder for 2D or 3D inputs (B, in_channels, *img_size) -> tokens (B, 1 + N, D).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for CT/X-ray, 4 for BraTS, ...).
        img_size, patch_size: int or one per axis; img_size must be divisible by patch_size.
        embed_dim, depth, num_heads, mlp_ratio: width, number of blocks, heads, MLP expansion.
        drop_path: stochastic depth rate of the last block (linearly increasing from 0, as timm/MAE).
        qkv_bias: bias on the qkv projection (ViT-B/16 ImageNet weights have one).
        pos_embed: "sincos" = fixed sin-cos (MAE pre-training) or "learnable" (fine-tuning), initialised to sin-cos.
        final_norm: keep the last LayerNorm `norm` (False for MAE-style global-pool classifiers, which use fc_norm).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        img_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
        pos_embed: str = "learnable",
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size, self.grid = check_geometry(spatial_dims, img_size, patch_size)
        if pos_embed not in ("sincos", "learnable"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learnable', got {pos_embed!r}.")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}.")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        self.spatial_dims, self.in_channels, self.embed_dim = spatial_dims, in_channels, embed_dim
        self.num_patches = math.prod(self.grid)
        self.patch_embed = PatchEmbed(spatial_dims, in_channels, self.patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(self.grid, embed_dim), requires_grad=pos_embed == "learnable")
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if final_norm else nn.Identity()
        init_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, *img) -> (B, 1 + K, D): class token + the patches in `ids_keep` (B, K) (all when None)."""
        if tuple(x.shape[1:]) != (self.in_channels, *self.img_size):
            raise ValueError(f"expected input (B, {self.in_channels}, {', '.join(map(str, self.img_size))}), got {tuple(x.shape)}.")
        tokens = self.patch_embed(x, ids_keep)
        pos = self.pos_embed[:, 1:]
        if ids_keep is None:
            tokens = tokens + pos
        else:
            tokens = tokens + pos.squeeze(0)[ids_keep]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls.to(tokens.dtype), tokens], dim=1)

    def forward(
        self, x: torch.Tensor, return_layers: Sequence[int] | None = None, ids_keep: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode `x`; returns normed tokens (B, 1 + K, D).

        With `return_layers` (1-based block numbers, as the UNETR paper's z3, z6, z9, z12), also returns the raw
        outputs of those blocks, in the order asked, as a list of (B, 1 + K, D) tensors.
        """
        wanted = {} if return_layers is None else {int(k): i for i, k in enumerate(return_layers)}
        if any(not 1 <= k <= len(self.blocks) for k in wanted):
            raise ValueError(f"return_layers={return_layers} must lie in 1..{len(self.blocks)}.")
        hidden: list[torch.Tensor | None] = [None] * len(wanted)
        x = self.embed(x, ids_keep)
        for k, block in enumerate(self.blocks, start=1):
            x = block(x)
            if k in wanted:
                hidden[wanted[k]] = x
        x = self.norm(x)
        return x if return_layers is None else (x, hidden)  # type: ignore[return-value]
