"""UNETR (Hatamizadeh et al. 2022) on our ViT, with MONAI's UNETR decoder blocks, for 2D and 3D.

MONAI's `UNETR` hard-codes patch 16, 12 blocks and skips after blocks 4/7/10; here the patch size (a power of
two, the same on every axis), the depth and the skip blocks are free. With patch 2**S the decoder has S
up-sampling stages: the bottleneck (last skip block, after the encoder's final norm) is up-sampled S times, and
skip k = 1..S-1 (block `skip_layers[k-1]`) is brought from 1/2**S to 1/2**k resolution by S-k transposed convs
(`UnetrPrUpBlock`), with feature_size * 2**k channels; a conv block on the input is the full-resolution skip.
Patch 16 gives MONAI's layout exactly (4 stages, feature sizes f, 2f, 4f, 8f).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from .vit import ViT, check_geometry

__all__ = ["UNETR", "default_skip_layers"]


def default_skip_layers(depth: int, stages: int) -> tuple[int, ...]:
    """Evenly spaced 1-based blocks ending at the last: depth 12, 4 stages -> (3, 6, 9, 12) as in the paper."""
    return tuple(max(1, round(depth * k / stages)) for k in range(1, stages + 1))


class UNETR(nn.Module):
    """(B, in_channels, *img) -> logits (B, out_channels, *img).

    Args:
        skip_layers: 1-based encoder blocks feeding the decoder, shallow to deep, one per stage (the last one must
            be the final block); None = evenly spaced (3, 6, 9, 12 for ViT-B/16).
        feature_size: channels of the full-resolution decoder stage (16 in the paper).
        norm_name, res_block: passed to MONAI's blocks ("instance", True as MONAI's UNETR).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        img_size: int | Sequence[int],
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        feature_size: int = 16,
        skip_layers: Sequence[int] | None = None,
        qkv_bias: bool = True,
        norm_name: tuple | str = "instance",
        res_block: bool = True,
    ) -> None:
        super().__init__()
        _, patch, self.grid = check_geometry(spatial_dims, img_size, patch_size)
        stages = patch[0].bit_length() - 1
        if len(set(patch)) != 1 or patch[0] != 2**stages or stages < 1:
            raise ValueError(f"UNETR needs the same power-of-two patch size on every axis, got {patch}.")
        skips = default_skip_layers(depth, stages) if skip_layers is None else tuple(int(k) for k in skip_layers)
        if len(skips) != stages or list(skips) != sorted(set(skips)) or skips[0] < 1 or skips[-1] != depth:
            raise ValueError(
                f"skip_layers={skip_layers} must be {stages} increasing 1-based blocks ending at depth={depth} for "
                f"patch {patch[0]} ({stages} up-sampling stages), e.g. {default_skip_layers(depth, stages)}."
            )
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}.")
        self.skip_layers = skips
        self.encoder = ViT(spatial_dims, in_channels, img_size, patch, embed_dim, depth, num_heads, mlp_ratio,
                           drop_path=drop_path, qkv_bias=qkv_bias, pos_embed="learnable")
        f, common = feature_size, dict(spatial_dims=spatial_dims, kernel_size=3, norm_name=norm_name, res_block=res_block)
        self.stem = UnetrBasicBlock(in_channels=in_channels, out_channels=f, stride=1, **common)
        self.skips = nn.ModuleList(
            UnetrPrUpBlock(in_channels=embed_dim, out_channels=f * 2**k, num_layer=stages - k - 1, stride=1,
                           upsample_kernel_size=2, conv_block=True, **common)
            for k in range(1, stages)
        )
        # ups[k] takes stage k+1 to stage k (resolution 1/2**k, f * 2**k channels); the bottleneck has embed_dim.
        self.ups = nn.ModuleList(
            UnetrUpBlock(in_channels=embed_dim if k == stages - 1 else f * 2 ** (k + 1), out_channels=f * 2**k,
                         upsample_kernel_size=2, **common)
            for k in range(stages)
        )
        self.out = UnetOutBlock(spatial_dims=spatial_dims, in_channels=f, out_channels=out_channels)

    def _grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, D) tokens -> (B, D, *grid) feature map (class token dropped)."""
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, *self.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last, hidden = self.encoder(x, return_layers=self.skip_layers[:-1])
        features = [self.stem(x)] + [skip(self._grid(h)) for skip, h in zip(self.skips, hidden)]
        y = self._grid(last)
        for k in reversed(range(len(self.ups))):
            y = self.ups[k](y, features[k])
        return self.out(y)
