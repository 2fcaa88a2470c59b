"""nnFormer (Zhou et al. 2021) and a masked autoencoder for its hierarchical encoder.

nnFormer is a 3D U-shaped transformer: a convolutional embedding turns the volume into a token grid, encoder
stages of windowed self-attention (local windows, alternating with shifted windows so information crosses
window borders; a window as large as the grid is global attention) are separated by patch merging (GELU,
LayerNorm, strided 3x3x3 convolution), and the decoder mirrors them with strided transposed convolutions.  Instead
of concatenating the encoder skip, the first block of each decoder stage is *skip attention*: queries from the
decoder, keys and values from the encoder feature of the same resolution, and - as in the official code - the skip
is also added to the decoder's residual stream (without that sum the tiny model could not overfit one volume).
A final LayerNorm and transposed convolution expand tokens to voxels.

One attention module serves every block (local, shifted, skip): `selfmae.models.attention.attention` (PyTorch's
fused SDPA, or two matmuls for bf16 on a CPU) on windows, with the relative position bias and the shifted-window
mask passed together as the additive mask.

`NnFormerEncoder` is also what `nnformer_mae.NnFormerMAE` pre-trains (same class, same parameter names). Sizes live
in the configs (finetune/pretrain_nnformer_btcv.yaml; `selfmae.models.nnformer_size` reads them), the builder from
a config is `selfmae.models.build_model`.

Tensors are channels-last inside the transformer: (B, D, H, W, C).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock
from monai.networks.layers import DropPath
from monai.networks.nets.swin_unetr import compute_mask, window_partition, window_reverse
from torch import nn

from .attention import attention
from .nnformer_geometry import StageGeometry, Triple, stage_geometry, triple

def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 4, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 4, 1, 2, 3)


class WindowAttention(nn.Module):
    """Multi-head attention inside windows of N = prod(window) tokens, with a learned relative position bias.

    Queries come from `xq`, keys/values from `xkv` (the same tensor for self-attention, the encoder skip for skip
    attention).  The bias (heads, N, N) and the optional shifted-window mask (nW, N, N) are summed into SDPA's
    additive `attn_mask`; for the masked case the windows are folded into the head axis, (B, nW*heads, N, hd), so
    the mask broadcasts over the batch without being copied per sample.
    """

    def __init__(self, dim: int, num_heads: int, window: Triple):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.window = num_heads, window
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        span = [2 * w - 1 for w in window]
        self.bias_table = nn.Parameter(torch.zeros(span[0] * span[1] * span[2], num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + torch.tensor([w - 1 for w in window])
        self.register_buffer("bias_index", (rel[..., 0] * span[1] + rel[..., 1]) * span[2] + rel[..., 2],
                             persistent=False)  # (N, N) into bias_table

    def forward(self, xq: torch.Tensor, xkv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """xq, xkv: (B*nW, N, C) windows; mask: (nW, N, N) additive or None -> (B*nW, N, C)."""
        bw, n, c = xq.shape
        h = self.num_heads
        q = self.q(xq).view(bw, n, h, c // h).transpose(1, 2)
        k, v = self.kv(xkv).view(bw, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # (h, N, N)
        if mask is None:
            out = attention(q, k, v, bias.to(q.dtype))
        else:
            nw = mask.shape[0]
            q, k, v = (t.reshape(bw // nw, nw * h, n, c // h) for t in (q, k, v))
            attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape(nw * h, n, n)
            out = attention(q, k, v, attn_mask.to(q.dtype)).reshape(bw, h, n, c // h)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class NnFormerBlock(nn.Module):
    """Pre-norm transformer block on windows: LV-MSA (no shift), shifted windows (shift > 0) or, with `skip=True`,
    skip attention whose keys/values come from the encoder feature passed as `context`.

    The shifted-window mask depends only on the (fixed) grid, so it is built once as a non-persistent buffer.
    """

    def __init__(self, dim: int, num_heads: int, geometry: StageGeometry, shifted: bool, drop_path: float = 0.0,
                 mlp_ratio: float = 4.0, skip: bool = False):
        super().__init__()
        self.window = geometry.window
        self.shift = geometry.shift if shifted else (0, 0, 0)
        self.norm1 = nn.LayerNorm(dim)
        self.norm_skip = nn.LayerNorm(dim) if skip else None
        self.attn = WindowAttention(dim, num_heads, self.window)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), dropout_rate=0.0, act="GELU")
        mask = compute_mask(geometry.grid, self.window, self.shift, None) if any(self.shift) else None
        self.register_buffer("shift_mask", mask, persistent=False)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.shift):
            x = torch.roll(x, tuple(-s for s in self.shift), dims=(1, 2, 3))
        return window_partition(x, self.window)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, D, H, W, C); context: encoder skip of the same shape (skip blocks only) -> (B, D, H, W, C)."""
        if (context is None) != (self.norm_skip is None):
            raise ValueError("a skip-attention block needs `context`; other blocks must not get one")
        b, d, h, w, _ = x.shape
        xq = self._windows(self.norm1(x))
        xkv = xq if context is None else self._windows(self.norm_skip(context))
        out = window_reverse(self.attn(xq, xkv, self.shift_mask), self.window, (b, d, h, w))
        if any(self.shift):
            out = torch.roll(out, self.shift, dims=(1, 2, 3))
        if context is not None:  # nnFormer's skip attention: the residual stream is x_up + skip
            x = x + context
        x = x + self.drop_path(out)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _stage_blocks(dim: int, heads: int, depth: int, geometry: StageGeometry, dpr: Sequence[float],
                  skip_first: bool = False) -> nn.ModuleList:
    """`depth` blocks alternating local and shifted windows; optionally the first one is skip attention."""
    return nn.ModuleList(NnFormerBlock(dim, heads, geometry, shifted=j % 2 == 1, drop_path=dpr[j],
                                       skip=skip_first and j == 0) for j in range(depth))


class ConvEmbedding(nn.Module):
    """nnFormer's convolutional embedding, from voxels to the first token grid.

    Two `project` steps as in the official code, each a strided 3x3x3 convolution (stride <= 2 per axis) then a
    3x3x3 convolution at that resolution, GELU + LayerNorm after each convolution except the last; LayerNorm on the
    output tokens.  The strides split patch_size into steps of <= 2: patch (2, 4, 4) is (2, 2, 2) then (1, 2, 2),
    patch 2 is 2 then 1 (more steps for a patch above 4).  (B, C_in, D, H, W) -> (B, D/pD, H/pH, W/pW, embed_dim).
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: Triple):
        super().__init__()
        if any(p & (p - 1) for p in patch_size):
            raise ValueError(f"patch_size {patch_size} must be powers of two (built from stride-2 convolutions)")
        strides, left = [], list(patch_size)
        while any(p > 1 for p in left) or len(strides) < 2:
            strides.append(tuple(2 if p > 1 else 1 for p in left))
            left = [max(p // 2, 1) for p in left]
        # official width embed_dim / 2 between the steps, but never fewer channels than the voxels the first strided
        # convolution folds into one position (in_channels * prod(stride)), up to embed_dim: at paper width this is
        # always embed_dim / 2; at tiny width (24) a 4-channel MRI would otherwise squeeze 32 values into 12
        fold = in_channels * strides[0][0] * strides[0][1] * strides[0][2]
        mid = max(embed_dim // 2, min(embed_dim, fold))
        chans = [in_channels] + [mid] * (len(strides) - 1) + [embed_dim]
        layers = []  # (in, out, stride): each step's strided convolution, then one at its resolution
        for i, st in enumerate(strides):
            layers += [(chans[i], chans[i + 1], st), (chans[i + 1], chans[i + 1], (1, 1, 1))]
        self.convs = nn.ModuleList(nn.Conv3d(ci, co, 3, stride=st, padding=1) for ci, co, st in layers)
        self.norms = nn.ModuleList(nn.LayerNorm(co) for _, co, _ in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x if i == 0 else _channels_first(x))
            x = norm(_channels_last(F.gelu(x) if i < len(self.convs) - 1 else x))
        return x


class Resample(nn.Module):
    """Up: LayerNorm then a 2x2x2 stride-2 transposed convolution (C -> C/2), nnFormer's patch expanding.
    Down: nnFormer's patch merging, GELU + LayerNorm then a 3x3x3 stride-2 convolution (C -> 2C)."""

    def __init__(self, dim: int, up: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.gelu = not up
        if up:
            self.conv = nn.ConvTranspose3d(dim, dim // 2, kernel_size=2, stride=2)
        else:
            self.conv = nn.Conv3d(dim, dim * 2, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, 2D, 2H, 2W, C/2) up, or (B, D/2, H/2, W/2, 2C) down."""
        return _channels_last(self.conv(_channels_first(self.norm(F.gelu(x) if self.gelu else x))))


def _drop_path_rates(drop_path: float, depths: Sequence[int]) -> list[list[float]]:
    n = sum(depths)
    rates = [drop_path * i / max(n - 1, 1) for i in range(n)]  # linear, plain Python (works under a meta device)
    return [rates[sum(depths[:s]):sum(depths[:s + 1])] for s in range(len(depths))]


class NnFormerEncoder(nn.Module):
    """Convolutional embedding + stages of (local, shifted) window attention with strided-conv down-sampling.

    Shared by `NnFormer` and `NnFormerMAE` (same class, same parameter names) so pre-trained weights transfer.
    forward: (B, C_in, *img_size) -> list over stages of normalised features (B, *grid_s, embed_dim * 2**s).
    """

    def __init__(self, in_channels: int, img_size: Sequence[int], patch_size: int | Sequence[int] = (2, 4, 4),
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_sizes: Sequence = (4, 4, 8, 4), drop_path: float = 0.0):
        super().__init__()
        if not len(depths) == len(num_heads) >= 2:
            raise ValueError(f"depths {depths} and num_heads {num_heads} need the same length >= 2")
        self.img_size, self.patch_size = triple(img_size, "img_size"), triple(patch_size, "patch_size")
        self.geometry = stage_geometry(self.img_size, self.patch_size, window_sizes, len(depths))
        self.dims = [embed_dim * 2**s for s in range(len(depths))]
        dpr = _drop_path_rates(drop_path, depths)
        self.embed = ConvEmbedding(in_channels, embed_dim, self.patch_size)
        self.stages = nn.ModuleList(_stage_blocks(self.dims[s], num_heads[s], depths[s], self.geometry[s], dpr[s])
                                    for s in range(len(depths)))
        self.downs = nn.ModuleList(Resample(d, up=False) for d in self.dims[:-1])
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in self.dims)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None,
                mask_token: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x: (B, C_in, *img_size); token_mask: (B, *grid_0) 1 = replace that embedding by `mask_token` (C,)."""
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"input spatial size {tuple(x.shape[2:])} != img_size {self.img_size} "
                             "(use sliding-window inference with roi_size = img_size)")
        x = self.embed(x)
        if token_mask is not None:
            m = token_mask.unsqueeze(-1).to(x.dtype)
            x = x * (1 - m) + mask_token.to(x.dtype) * m
        feats = []
        for s, blocks in enumerate(self.stages):
            if s:
                x = self.downs[s - 1](x)
            for blk in blocks:
                x = blk(x)
            feats.append(self.norms[s](x))
        return feats


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class NnFormer(nn.Module):
    """nnFormer segmenter: `NnFormerEncoder`, a decoder of transposed-conv up-sampling + skip-attention stages,
    and a transposed convolution expanding tokens to voxels (kernel = stride = patch_size).

    forward: (B, C_in, *img_size) -> logits (B, out_channels, *img_size); with `deep_supervision` and in training
    mode a list [full, 1/2, 1/4, ...] resolution logits, one per decoder stage (nnU-Net style).
    """

    def __init__(self, in_channels: int, out_channels: int, img_size: Sequence[int],
                 patch_size: int | Sequence[int] = (2, 4, 4), embed_dim: int = 96, depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_sizes: Sequence = (4, 4, 8, 4),
                 drop_path: float = 0.0, deep_supervision: bool = False):
        super().__init__()
        self.encoder = NnFormerEncoder(in_channels, img_size, patch_size, embed_dim, depths, num_heads,
                                       window_sizes, drop_path)
        enc, dpr = self.encoder, _drop_path_rates(drop_path, depths)
        stages = range(len(depths) - 1)  # decoder stage s works on encoder grid s, finest first
        self.ups = nn.ModuleList(Resample(enc.dims[s + 1], up=True) for s in stages)
        self.decoder = nn.ModuleList(_stage_blocks(enc.dims[s], num_heads[s], depths[s], enc.geometry[s], dpr[s],
                                                   skip_first=True) for s in stages)
        self.deep_supervision = deep_supervision
        p = enc.patch_size
        head_stages = stages if deep_supervision else [0]
        self.head_norms = nn.ModuleList(nn.LayerNorm(enc.dims[s]) for s in head_stages)
        self.heads = nn.ModuleList(nn.ConvTranspose3d(enc.dims[s], out_channels, kernel_size=p, stride=p)
                                   for s in head_stages)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self.encoder(x)
        y, outs = feats[-1], []
        for s in reversed(range(len(self.decoder))):
            y = self.ups[s](y)
            for j, blk in enumerate(self.decoder[s]):
                y = blk(y, feats[s] if j == 0 else None)
            if s < len(self.heads):
                outs.append(self.heads[s](_channels_first(self.head_norms[s](y))))
        outs.reverse()
        return outs if self.deep_supervision and self.training else outs[0]

