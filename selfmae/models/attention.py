"""Scaled dot-product attention, with the kernel chosen by device and dtype (one function for ViT and nnFormer).

PyTorch's fused `scaled_dot_product_attention` is used everywhere except for reduced precision (bf16/fp16) on a
CPU. There its flash kernel for CPU, at the MAE's attention shapes (17-217 tokens, head widths 8-64), ran forward +
backward 2.5-7.5x slower than the same attention written as two matmuls around a softmax, which oneDNN runs on
AMX / AVX512-BF16 (benchmarks/attention_cpu.py on a 2-core Xeon with AMX, issue #15: e.g. the ViT-B/16 2D encoder
at batch 8, 10.3 ms against 2.4 ms). In fp32 the fused kernel was faster at every one of those shapes (1.1-2.5x),
so it is kept, and fp32 results stay bit-identical to earlier runs.

The matmul form is the textbook one (Vaswani et al. 2017): softmax(q k^T / sqrt(d) + mask) v. PyTorch's CPU
softmax accumulates bf16 inputs in fp32 internally; its output (and so the weights applied to v) is bf16, as the
flash kernel's probabilities are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["attention", "matmul_attention", "uses_fused_kernel"]


def uses_fused_kernel(q: torch.Tensor) -> bool:
    """True where `attention` calls PyTorch's fused SDPA: any device but a CPU, and any CPU tensor in fp32/fp64."""
    return q.device.type != "cpu" or q.dtype in (torch.float32, torch.float64)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v.

    Args:
        q: (B, H, Nq, d); k, v: (B, H, Nk, d), same dtype and device.
        mask: additive float mask broadcastable to (B, H, Nq, Nk) (e.g. a relative position bias (H, Nq, Nk)), or None.
    Returns (B, H, Nq, d) in q's dtype.
    """
    if uses_fused_kernel(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return matmul_attention(q, k, v, mask)


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """The matmul form `attention` takes for bf16 on a CPU, in any dtype (benchmarks/attention_cpu.py times it
    against the fused kernel). Shapes as `attention`."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    if mask is not None:
        scores = scores + mask
    return torch.matmul(scores.softmax(dim=-1), v)
