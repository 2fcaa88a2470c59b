"""Masked autoencoder for nnFormer's hierarchical encoder (the MAE-nnFormer paper), on the shared core `mim.py`.

A windowed, down-sampling encoder cannot drop tokens as the ViT MAE does, so it is masked in place (SimMIM-style):
cells of the bottleneck grid are hidden at random, their voxels are zeroed (so the overlapping embedding
convolutions see none of them) and their embeddings replaced by a learnable `mask_token`; a linear head on the
bottleneck feature of each cell predicts its voxels. The encoder is `nnformer.NnFormerEncoder`, the same class
and parameter names as the segmenter's, so pre-trained weights transfer by prefix.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import mim
from .nnformer import NnFormerEncoder, _init_weights
from .vit import from_patches, to_patches


class NnFormerMAE(nn.Module):
    """`NnFormerEncoder` + mask token + linear head on the bottleneck; loss: `mim.masked_mse` on hidden cells,
    targets normalised per cell (`norm_pix_loss`).

    A cell is patch_size * 2**(stages-1) voxels per axis (`cell`); the bottleneck `grid` has N = prod(grid) cells
    (`num_cells`), each predicted as P = prod(cell) * C_in values in MAE's patchify layout.
    forward(x (B, C_in, *img_size), mask_ratio=None) -> (loss (), pred (B, N, P), mask (B, N) 1 = hidden), like
    the ViT MAE.
    """

    def __init__(self, in_channels: int, img_size: Sequence[int], patch_size: int | Sequence[int] = (2, 4, 4),
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_sizes: Sequence = (4, 4, 8, 4), drop_path: float = 0.0, mask_ratio: float = 0.75,
                 norm_pix_loss: bool = True):
        super().__init__()
        self.encoder = NnFormerEncoder(in_channels, img_size, patch_size, embed_dim, depths, num_heads,
                                       window_sizes, drop_path)
        self.mask_ratio, self.norm_pix_loss, self.in_channels = mim.check_ratio(mask_ratio), norm_pix_loss, in_channels
        self.grid = self.encoder.geometry[-1].grid
        self.cell = tuple(i // g for i, g in zip(self.encoder.img_size, self.grid))
        self.num_cells = self.grid[0] * self.grid[1] * self.grid[2]
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(self.encoder.dims[-1], self.cell[0] * self.cell[1] * self.cell[2] * in_channels)
        _init_weights(self.head)

    def draw_mask(self, batch: int, mask_ratio: float, device: torch.device | str) -> torch.Tensor:
        """(B, N) float mask with round(N * mask_ratio) ones per sample (`mim.random_masking`, this model's draw)."""
        return mim.random_masking(batch, self.num_cells, mask_ratio, device, hide_lowest=True)[2]

    def _upsample(self, mask: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
        """(B, N) cell mask -> (B, *grid * factor) volume."""
        m = mask.view(-1, *self.grid)
        for ax, f in enumerate(factor, start=1):
            m = m.repeat_interleave(f, dim=ax)
        return m

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, N, P), cells in row-major grid order (the bottleneck's token order)."""
        return to_patches(x, self.cell)

    def unpatchify(self, p: torch.Tensor) -> torch.Tensor:
        """(B, N, P) -> (B, C, D, H, W); inverse of `patchify`."""
        return from_patches(p, self.cell, self.grid)

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = self.draw_mask(x.shape[0], self.mask_ratio if mask_ratio is None else mask_ratio, x.device)
        hidden = self._upsample(mask, self.cell).unsqueeze(1).to(x.dtype)
        token_factor = tuple(c // p for c, p in zip(self.cell, self.encoder.patch_size))
        feats = self.encoder(x * (1 - hidden), self._upsample(mask, token_factor), self.mask_token)
        pred = self.head(feats[-1]).reshape(x.shape[0], self.num_cells, -1)
        target = mim.patch_targets(x, self.cell, self.norm_pix_loss, mean_by_sum=True)[0]
        return mim.masked_mse(pred, target, mask), pred, mask

    def reconstruct(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Volumes shaped like x for figures: masked, recon, pasted, error (`mim.reconstruct`)."""
        return mim.reconstruct(x, pred, mask, self.cell, self.grid, self.norm_pix_loss, mean_by_sum=True)
