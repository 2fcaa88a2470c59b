"""AdamW parameter groups with layer-wise lr decay (BEiT/MAE fine-tuning) and no weight decay where it hurts."""
from __future__ import annotations

from torch import nn

__all__ = ["param_groups", "layer_id"]

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")


def layer_id(name: str, depth: int) -> int:
    """0 for the encoder's embeddings, N + 1 for `encoder.blocks.N`, depth + 1 for everything after the blocks
    (the encoder's final norm, heads, decoders), which therefore train at the full lr."""
    if name.startswith(("encoder.patch_embed", "encoder.cls_token", "encoder.pos_embed")):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None, lr: float | None = None) -> list[dict]:
    """Groups for `torch.optim.AdamW(param_groups(...))`; every parameter of `model` is in exactly one group.

    Each group carries `lr_scale` = layer_decay ** (depth + 1 - layer_id) (1.0 without layer decay or for
    models without `encoder.blocks`): the training loop sets `group["lr"] = lr * group["lr_scale"]` at each
    schedule step (given `lr`, the groups also start with it). Biases, norms (all 1-D tensors), position
    embeddings, class and mask tokens get no weight decay. Frozen parameters (the fixed sin-cos embeddings) are
    included too; they have no gradient, so AdamW skips them.
    """
    blocks = getattr(getattr(model, "encoder", None), "blocks", None)
    depth = len(blocks) if isinstance(blocks, nn.ModuleList) and layer_decay is not None else None
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        no_decay = p.ndim <= 1 or name.endswith(_NO_DECAY_NAMES)
        lid = 0 if depth is None else layer_id(name, depth)
        scale = 1.0 if depth is None else float(layer_decay) ** (depth + 1 - lid)  # type: ignore[arg-type]
        group = groups.setdefault((lid, no_decay), {
            "params": [], "param_names": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale,
        })
        group["params"].append(p)
        group["param_names"].append(name)
    out = [groups[k] for k in sorted(groups)]
    if lr is not None:
        for g in out:
            g["lr"] = lr * g["lr_scale"]
    return out
