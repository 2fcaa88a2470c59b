"""Short human names for the models a config builds, for tables and labels ("ViT-B/16", "ViT 4x64, patch 4").

A tiny 4-layer, 64-wide ViT is not a ViT-B/16: every table row and explorer label names the architecture that was
actually built, from the same `model` config section `selfmae.models.build_model` reads.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

# (embed_dim, depth, num_heads) -> the standard ViT size names (Dosovitskiy et al.; Touvron et al. for Ti/S)
VIT_SIZES = {(192, 12, 3): "Ti", (384, 12, 6): "S", (768, 12, 12): "B", (1024, 24, 16): "L", (1280, 32, 16): "H"}


def _patch(patch_size: object) -> str:
    """16 or [16, 16, 16] -> '16'; [2, 4, 4] -> '2x4x4'."""
    if isinstance(patch_size, Sequence) and not isinstance(patch_size, str):
        sizes = [int(p) for p in patch_size]
        return str(sizes[0]) if len(set(sizes)) == 1 else "x".join(str(p) for p in sizes)
    return str(int(patch_size))


def _vit(model_cfg: Mapping) -> tuple[str, bool]:
    """The encoder's name and whether it is a standard size (same defaults as `build_model`)."""
    embed, depth = int(model_cfg.get("embed_dim", 768)), int(model_cfg.get("depth", 12))
    heads, patch = int(model_cfg.get("num_heads", 12)), _patch(model_cfg.get("patch_size", 16))
    size = VIT_SIZES.get((embed, depth, heads))
    if size and "x" not in patch:
        return f"ViT-{size}/{patch}", True
    return f"ViT {depth}x{embed}, patch {patch}", False


def architecture_name(model_cfg: Mapping) -> str:
    """The architecture `build_model(model_cfg, ...)` builds, as a table cell.

    ViT encoders are named by their standard size when they have one (embed 768, depth 12, heads 12, patch 16 is
    'ViT-B/16'), otherwise as 'ViT <depth>x<width>, patch <p>'. Examples:

        vit_classifier, tiny        -> 'ViT 4x64, patch 8'
        unetr, paper                -> 'UNETR (ViT-B/16)'   (the paper's UNETR: feature size 16)
        unetr, tiny                 -> 'UNETR (ViT 4x64, patch 4, features 8)'
        mae                         -> 'MAE (ViT 4x64, patch 4; decoder 2x64)'
        nnformer / nnformer_mae     -> 'nnFormer (C=24, depths 2-2-2)' / 'nnFormer MAE (C=24, depths 2-2-2)'
        swin_unetr                  -> 'Swin-UNETR (features 12)'

    An unknown model name is returned as it is.
    """
    name = model_cfg.get("name")
    if name in ("vit_classifier", "unetr", "mae"):
        vit, standard = _vit(model_cfg)
        if name == "vit_classifier":
            return vit
        if name == "unetr":
            features = int(model_cfg.get("feature_size", 16))
            return f"UNETR ({vit})" if standard and features == 16 else f"UNETR ({vit}, features {features})"
        decoder = f"{int(model_cfg.get('decoder_depth', 8))}x{int(model_cfg.get('decoder_embed_dim', 256))}"
        return f"MAE ({vit}; decoder {decoder})"
    if name in ("nnformer", "nnformer_mae"):
        depths = "-".join(str(int(d)) for d in model_cfg.get("depths", ()))
        kind = "nnFormer MAE" if name == "nnformer_mae" else "nnFormer"
        return f"{kind} (C={int(model_cfg.get('embed_dim', 96))}, depths {depths})"
    if name == "swin_unetr":
        return f"Swin-UNETR (features {int(model_cfg.get('feature_size', 48))})"
    return str(name)
