"""Drawing an `ExplorerView`: PNG bytes per panel for the live widget (`render_panels`) and one matplotlib
figure of the five panels for notebooks (`plot_view`)."""
from __future__ import annotations

import io

import numpy as np

from selfmae.explore.core import PANELS, ExplorerView

_LUTS: dict[str, np.ndarray] = {}
HIDDEN_TINT = np.array([70, 110, 170], np.float32)   # the colour of hidden patches in the masked-input panel


def _lut(cmap: str) -> np.ndarray:
    if cmap not in _LUTS:
        import matplotlib

        _LUTS[cmap] = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _LUTS[cmap]


def to_rgb(image: np.ndarray, vmin: float, vmax: float, cmap: str = "gray",
           tint: np.ndarray | None = None) -> np.ndarray:
    """A 2D array as (H, W, 3) uint8, colour-mapped over [vmin, vmax]; `tint`: bool mask of pixels to blend with
    HIDDEN_TINT (hidden patches)."""
    idx = np.clip((np.asarray(image, np.float32) - vmin) / max(vmax - vmin, 1e-8) * 255, 0, 255).astype(np.uint8)
    rgb = _lut(cmap)[idx]
    if tint is not None:
        rgb = rgb.astype(np.float32)
        rgb[tint] = 0.35 * rgb[tint] + 0.65 * HIDDEN_TINT
        rgb = rgb.astype(np.uint8)
    return rgb


def to_png(image: np.ndarray, vmin: float, vmax: float, cmap: str = "gray", size: int = 192,
           tint: np.ndarray | None = None) -> bytes:
    """A 2D array as PNG bytes, colour-mapped and enlarged (nearest neighbour, patches stay sharp) to ~size px.
    `tint`: bool mask of pixels to blend with HIDDEN_TINT (hidden patches)."""
    from PIL import Image

    rgb = to_rgb(image, vmin, vmax, cmap, tint)
    scale = max(1, size // max(rgb.shape[:2]))
    if scale > 1:
        rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def image_range(view: ExplorerView) -> tuple[float, float]:
    """The grey range every image panel shares: the original's 1-99 % percentiles."""
    lo, hi = (float(v) for v in np.percentile(view.images["original"], [1, 99]))
    return lo, hi if hi > lo else lo + 1.0


def render_panels(view: ExplorerView, size: int = 192) -> dict[str, bytes]:
    """PNG bytes per panel: the image panels share the original's 1-99 % range, the error map its own."""
    lo, hi = image_range(view)
    err_hi = float(np.percentile(view.images["error"], 99.5)) or 1.0
    out = {}
    for name in PANELS:
        if name == "error":
            out[name] = to_png(view.images[name], 0.0, err_hi, "magma", size)
        else:
            out[name] = to_png(view.images[name], lo, hi, "gray", size, tint=view.hidden if name == "masked" else None)
    return out


def tinted_panels(view: ExplorerView) -> dict[str, np.ndarray]:
    """The view's panels for a matplotlib figure: the masked input as (H, W, 3) uint8 with hidden patches tinted
    (HIDDEN_TINT, over the original's grey range), every other panel the 2D array as it is."""
    lo, hi = image_range(view)
    return {**view.images, "masked": to_rgb(view.images["masked"], lo, hi, "gray", tint=view.hidden)}


def plot_view(view: ExplorerView, title: str = ""):
    """The five panels as one matplotlib figure (for notebooks and papers rather than the live widget): hidden
    patches tinted in the masked input as in the widget; the title names the model, then `view.summary()`."""
    from selfmae.viz import plot_reconstructions

    fig = plot_reconstructions({title or "": tinted_panels(view)}, columns=PANELS)
    heading = "\n".join(part for part in (view.model, view.summary()) if part)
    fig.suptitle(heading, fontsize=9, y=1.1 + 0.08 * heading.count("\n"))
    return fig
