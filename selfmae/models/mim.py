"""Masked image modelling core of both masked autoencoders, after facebookresearch/mae `models_mae.py`
(`random_masking`, `patchify`, `forward_loss` with `norm_pix_loss`).

The ViT MAE (`mae.MAE`) encodes only the visible patches; the nnFormer MAE (`nnformer_mae.NnFormerMAE`) hides
cells of its bottleneck grid in place (a windowed encoder needs the full grid). Everything else is here, once:
which patches are hidden, what is regressed, the loss, and the images drawn for figures.

Shapes: x (B, C, *img) with 2 or 3 spatial axes, cut into a `grid` of N = prod(grid) patches of `patch` pixels;
K = N - num_hidden(N, mask_ratio) patches stay visible; P = prod(patch) * C values per patch, in MAE's patchify
layout (`vit.to_patches`: pixels in raster order, channel fastest); mask (B, N) float32, 1 = hidden.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .vit import from_patches, to_patches

__all__ = ["check_ratio", "num_hidden", "random_masking", "patch_targets", "masked_mse", "reconstruct",
           "display_stats", "neighbour_stats", "flat_guess"]


def check_ratio(mask_ratio: float) -> float:
    """mask_ratio as a float, or a ValueError unless it is in [0, 1)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio is the fraction of patches hidden and must be in [0, 1), got {mask_ratio}.")
    return float(mask_ratio)


def num_hidden(num_patches: int, mask_ratio: float) -> int:
    """round(N * mask_ratio) patches hidden, at most N - 1 (one stays visible)."""
    return min(int(round(num_patches * check_ratio(mask_ratio))), num_patches - 1)


def random_masking(batch: int, num_patches: int, mask_ratio: float, device: torch.device | str,
                   hide_lowest: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by sorting uniform noise (B, N), drawn on `device`.

    Returns ids_keep (B, K) int64 (the visible patches, in noise order), ids_restore (B, N) int64 (each patch's
    rank in the noise order, i.e. its place in [visible, hidden]-sorted tokens for MAE) and mask (B, N) float32.
    MAE hides the N - K patches of largest noise. `hide_lowest` hides those of smallest noise instead: the draw
    the nnFormer MAE has always made, kept so that a seed still gives the masks of its finished runs.
    """
    hide = num_hidden(num_patches, mask_ratio)
    ids_shuffle = torch.rand(batch, num_patches, device=device).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    if hide_lowest:
        return ids_shuffle[:, hide:], ids_restore, (ids_restore < hide).float()
    keep = num_patches - hide
    return ids_shuffle[:, :keep], ids_restore, (ids_restore >= keep).float()


def patch_targets(x: torch.Tensor, patch: Sequence[int], norm_pix: bool, mean_by_sum: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regression target (B, N, P) in fp32 and the per-patch mean and std (B, N, 1) it was normalised with.

    norm_pix (MAE's `norm_pix_loss`): (patch - mean) / sqrt(var + 1e-6), unbiased variance over the P values;
    otherwise the raw patch, with mean 0 and std 1. The ViT MAE takes mean and variance from one `torch.var_mean`;
    `mean_by_sum` (the nnFormer MAE) takes the mean from `Tensor.mean`, which can differ in the last bit - each
    model keeps its own, so that a seed reproduces its finished runs bit for bit.
    """
    t = to_patches(x.float(), patch)
    if not norm_pix:
        return t, torch.zeros_like(t[..., :1]), torch.ones_like(t[..., :1])
    if mean_by_sum:
        mean, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
    else:
        var, mean = torch.var_mean(t, dim=-1, keepdim=True)
    std = (var + 1e-6).sqrt()
    return (t - mean) / std, mean, std


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's `forward_loss`: pred, target (B, N, P), mask (B, N) -> mean over hidden patches of the per-patch
    mean squared error, a scalar in fp32 whatever the autocast dtype (0 when nothing is hidden)."""
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


@torch.no_grad()
def reconstruct(x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch: Sequence[int], grid: Sequence[int],
                norm_pix: bool, mean_by_sum: bool = False) -> dict[str, torch.Tensor]:
    """Images for figures, each shaped like x (B, C, *img) in fp32, from pred (B, N, P) and mask (B, N).

    masked: the input with hidden patches zeroed; recon: the prediction for every patch; pasted: visible input +
    predicted hidden patches; error: |pasted - x| (zero on visible patches). A norm-pix prediction is
    de-normalised with `display_stats`: a visible patch with its own mean/std, a hidden one with those of the
    visible patches around it, so the figure shows anatomy at its local brightness and never leaks statistics of
    what was hidden. mean_by_sum: as in `patch_targets`.
    """
    pred = pred.float()
    if norm_pix:
        _, mean, std = patch_targets(x, patch, True, mean_by_sum)
        mean, std = display_stats(mean, std, mask, grid)
        pred = pred * std + mean
    recon = from_patches(pred, patch, grid)
    hidden = from_patches(mask.float().unsqueeze(-1).expand(-1, -1, pred.shape[-1]), patch, grid)
    x = x.float()
    pasted = torch.lerp(x, recon, hidden)
    return {"masked": x * (1 - hidden), "recon": recon, "pasted": pasted, "error": (pasted - x).abs()}


def flat_guess(x: torch.Tensor, mask: torch.Tensor, patch: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """The simple reference a figure's reconstruction is measured against: x (B, C, *img) with every hidden patch
    (mask (B, N) 1) filled flat with the mean of its visible neighbours (`display_stats`), i.e. what `reconstruct`
    pastes for a norm-pix prediction of zero, using nothing that was hidden. Returns (B, C, *img) fp32."""
    n_pixels = x.shape[1] * math.prod(patch)
    zero = torch.zeros(*mask.shape, n_pixels, dtype=torch.float32, device=x.device)
    return reconstruct(x, zero, mask, patch, grid, norm_pix=True)["pasted"]


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
