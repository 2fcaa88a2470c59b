"""The geometry of nnFormer's stages: which token grid, attention window and shift each stage gets from a size,
and a ValueError naming what does not divide when a size cannot be built (`nnformer.py` is the architecture).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

Triple = tuple[int, int, int]


def triple(v: int | Sequence[int], name: str) -> Triple:
    """An int repeated over the three axes, or three positive ints; ValueError naming `name` otherwise."""
    t = (v,) * 3 if isinstance(v, int) else tuple(int(i) for i in v)
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or 3 positive ints, got {v!r}")
    return t  # type: ignore[return-value]


class StageGeometry(NamedTuple):
    grid: Triple    # token grid of the stage (D, H, W)
    window: Triple  # attention window, clipped to the grid
    shift: Triple   # shift of the alternate blocks; 0 on axes where the window spans the grid


def stage_geometry(img_size: Sequence[int], patch_size: int | Sequence[int], window_sizes: Sequence,
                   n_stages: int) -> list[StageGeometry]:
    """Token grid, window and shift of each stage, or a ValueError naming what does not divide.

    The embedding grid is img_size / patch_size; each later stage halves it, so img_size must be divisible by
    patch_size * 2**(n_stages-1); each stage's window (clipped to its grid) must divide that grid.
    """
    img, patch = triple(img_size, "img_size"), triple(patch_size, "patch_size")
    if len(window_sizes) != n_stages:
        raise ValueError(f"window_sizes has {len(window_sizes)} entries, expected one per stage ({n_stages})")
    unit = tuple(p * 2 ** (n_stages - 1) for p in patch)
    if any(i % u for i, u in zip(img, unit)):
        raise ValueError(f"img_size {img} must be divisible by patch_size {patch} x 2**(stages-1) = {unit}")
    out = []
    for s, ws in enumerate(window_sizes):
        grid = tuple(i // p // 2**s for i, p in zip(img, patch))
        win = tuple(min(w, g) for w, g in zip(triple(ws, f"window_sizes[{s}]"), grid))
        if any(g % w for g, w in zip(grid, win)):
            raise ValueError(f"stage {s}: window {win} does not divide the token grid {grid} "
                             f"(img_size {img} / patch_size {patch} / 2**{s})")
        shift = tuple(w // 2 if w < g else 0 for w, g in zip(win, grid))
        out.append(StageGeometry(grid, win, shift))  # type: ignore[arg-type]
    return out
