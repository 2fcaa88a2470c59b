"""Weight transfer between our models, and from ImageNet ViT-B/16 files, never silently.

Every model here holds its ViT under `.encoder`, so MAE -> classifier/UNETR is a copy of the `encoder.*` keys.
ImageNet weights come from a LOCAL file in timm naming (`patch_embed.proj.weight`, `cls_token`, `pos_embed`,
`blocks.N.*`, `norm.*`, `head.*`) and are adapted where the geometry differs:

* input channels: the RGB kernel is averaged over channels and replicated, scaled by C_in / C_out, so the response
  to an image with the same value in every channel is unchanged (3 -> 1 is the channel sum, 3 -> 4 is 3/4 of the
  mean on each channel);
* 2D -> 3D: the kernel is repeated along depth (the LAST spatial axis, MONAI's H, W, D) and divided by the patch
  depth, so the response to an input constant along depth is unchanged;
* position embeddings are resampled to the new patch grid (`interpolate_pos_embed`).

Files in MONAI's ViT/UNETR naming (`vit.patch_embedding.patch_embeddings.*`, `vit.blocks.N.attn.out_proj.*`,
`mlp.linear1/linear2`, ...) are renamed to the timm names first (`monai_to_timm`), and a timm-named file (an
ImageNet ViT, or facebookresearch/mae's own checkpoints) is read for init=mae too.

Anything else that differs in shape is an error naming the key and both shapes, and so is a load that leaves any
weight of the patch embedding or of a block untouched (`PretrainedWeightsError`, naming the file, a few of its
keys and what was expected): a run never trains from scratch while its record says it was pre-trained. Each load
returns a `LoadReport` (and logs it): keys loaded, adapted (with how), missing in the file, unexpected (in the
file, unused).
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from selfmae.torchfile import load_torch_file

from .pos_embed import interpolate_pos_embed
from .vit import ViT

__all__ = ["LoadReport", "PretrainedWeightsError", "read_state_dict", "load_pretrained_encoder", "adapt_patch_weight",
           "monai_to_timm"]

log = logging.getLogger(__name__)

_TIMM_ENCODER_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
# MONAI ViT (monai.networks.nets.ViT, UNETR's `.vit`) -> timm names, applied after the `vit.` prefix is removed
_MONAI_RENAMES = (
    (re.compile(r"^patch_embedding\.position_embeddings$"), "pos_embed"),
    (re.compile(r"^patch_embedding\.cls_token$"), "cls_token"),
    (re.compile(r"^patch_embedding\.patch_embeddings\.(1\.)?(weight|bias)$"), r"patch_embed.proj.\2"),
    (re.compile(r"^(blocks\.\d+)\.attn\.out_proj\.(weight|bias)$"), r"\1.attn.proj.\2"),
    (re.compile(r"^(blocks\.\d+)\.mlp\.linear([12])\.(weight|bias)$"), r"\1.mlp.fc\2.\3"),
)
_MONAI_MARK = re.compile(r"^(vit\.)?(patch_embedding\.|blocks\.\d+\.(attn\.out_proj|mlp\.linear[12])\.)")
NAMINGS = ("selfmae (encoder.patch_embed.proj.weight, encoder.blocks.N.attn.qkv.weight, ...)",
           "timm / facebookresearch-mae (patch_embed.proj.weight, blocks.N.attn.qkv.weight, blocks.N.mlp.fc1.weight)",
           "MONAI ViT/UNETR (vit.patch_embedding.patch_embeddings.weight, vit.blocks.N.attn.qkv.weight, "
           "vit.blocks.N.mlp.linear1.weight)")


class PretrainedWeightsError(ValueError):
    """A pre-trained file that does not fit the model: it lacks part of the encoder (patch embedding or a block), or
    holds a tensor whose shape differs from the model's and cannot be adapted. The message names the file."""


@dataclass
class LoadReport:
    """What a load did: `loaded` target keys, `adapted` ("key: how"), `missing` target keys the file did not
    provide, `unexpected` file keys (under their name in the file) that were not used."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    source: str = ""
    encoder_prefix: str | None = None   # the encoder's keys in the model ("encoder."; "" for a bare ViT)

    def record(self) -> dict:
        """For a run record (run.json `pretrained_load`): the file and init, counts, and every key list."""
        return {"source": self.source, "n_loaded": len(self.loaded), "n_missing": len(self.missing),
                "n_unexpected": len(self.unexpected), "adapted": list(self.adapted), "missing": list(self.missing),
                "unexpected": list(self.unexpected)}

    def __str__(self) -> str:
        def short(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f", ... (+{len(keys) - 12})" if len(keys) > 12 else "")

        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        lines += [f"  adapted: {a}" for a in self.adapted]
        in_encoder = [k for k in self.missing if self.encoder_prefix is not None and k.startswith(self.encoder_prefix)]
        outside = [k for k in self.missing if k not in in_encoder]
        loaded = set(self.loaded)
        biases = [k for k in in_encoder if k.endswith(".bias") and k.removesuffix("bias") + "weight" in loaded]
        weights = [k for k in in_encoder if k not in biases]
        lines += [f"  encoder tensors not in the file ({len(weights)}; they keep their initial values, so this "
                  f"part of the encoder is not pre-trained): {short(weights)}"] if weights else []
        lines += [f"  encoder biases not in the file ({len(biases)}; their layers' weights are loaded from it, "
                  f"their biases start at zero, as MAE initialises biases; a file without them usually comes "
                  f"from layers built with bias=False): {short(biases)}"] if biases else []
        lines += [f"  outside the encoder, not in the file ({len(outside)}; trained from their initial values, as "
                  f"a new head or decoder is): {short(outside)}"] if outside else []
        lines += [f"  unused ({len(self.unexpected)}; in the file but not this model's encoder, e.g. an MAE decoder "
                  f"and mask token, another model's decoder, a final norm this model replaces): "
                  f"{short(self.unexpected)}"] if self.unexpected else []
        return "\n".join(lines)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: our engine's `{"model": state_dict, ...}`, `{"state_dict"|"model_state": ...}`
    or a bare state dict, from .pth/.pt/.bin (torch.load) or .safetensors (if that package is installed).
    `module.` / `_orig_mod.` prefixes from DDP / torch.compile are stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError(f"{path}: reading .safetensors needs the 'safetensors' package") from e
        obj = load_file(str(path))
    else:
        # the user's own file: one that needs full unpickling (numpy objects in it) is read fully
        obj = load_torch_file(path, allow_full_unpickle=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor) or a checkpoint holding one under "
                         "'model', 'state_dict' or 'model_state'.")
    out = {}
    for k, v in obj.items():
        for prefix in _WRAPPER_PREFIXES:
            k = k[len(prefix):] if k.startswith(prefix) else k
        out[k] = v
    return out


def monai_to_timm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename MONAI ViT/UNETR keys to timm's; other keys are kept. Returns (renamed dict, new name -> old name).

    `vit.` (UNETR's ViT) is dropped, `patch_embedding.position_embeddings` -> `pos_embed` (MONAI has no class
    row; the loader adds a zero one), `patch_embedding.patch_embeddings[.1]` -> `patch_embed.proj`,
    `attn.out_proj` -> `attn.proj`, `mlp.linear1/2` -> `mlp.fc1/2`; `norm1`, `norm2`, `attn.qkv`, `norm` keep
    their names. A dict with no MONAI-style key is returned unchanged.
    """
    if not any(_MONAI_MARK.match(k) for k in state_dict):
        return state_dict, {k: k for k in state_dict}
    out, origin = {}, {}
    for key, value in state_dict.items():
        new = key[len("vit."):] if key.startswith("vit.") else key
        for pattern, repl in _MONAI_RENAMES:
            new = pattern.sub(repl, new)
        out[new], origin[new] = value, key
    return out, origin


def _perceptron_to_conv(weight: torch.Tensor, want: torch.Size) -> torch.Tensor:
    """MONAI's "perceptron" patch embedding, a Linear (D, prod(patch) * C) over channel-last patches, as the
    (D, C, *patch) kernel of the equivalent convolution."""
    d, c, *patch = want
    return weight.reshape(d, *patch, c).movedim(-1, 1).contiguous()


def adapt_patch_weight(weight: torch.Tensor, target_shape: torch.Size | tuple[int, ...], key: str = "patch_embed.proj.weight") -> tuple[torch.Tensor, str]:
    """Fit a patch-embedding kernel (D, C, *patch) to `target_shape`: channels, then 2D -> 3D over depth.

    Returns the new weight and a note of what was done ("" if nothing)."""
    src, dst = tuple(weight.shape), tuple(target_shape)
    ok = src[0] == dst[0] and (len(src) == len(dst) or (len(src), len(dst)) == (4, 5)) and src[2:4] == dst[2:4]
    if not ok:
        raise ValueError(f"{key}: shape {src} in the file cannot be adapted to the model's {dst}.")
    notes = []
    if src[1] != dst[1]:
        weight = weight.mean(dim=1, keepdim=True).expand(-1, dst[1], *src[2:]) * (src[1] / dst[1])
        notes.append(f"channels {src[1]} -> {dst[1]}")
    if len(src) == 4 and len(dst) == 5:
        weight = weight.unsqueeze(-1).expand(*weight.shape, dst[-1]) / dst[-1]
        notes.append(f"inflated over depth {dst[-1]}")
    elif src[2:] != dst[2:]:
        raise ValueError(f"{key}: shape {src} in the file cannot be adapted to the model's {dst}.")
    return weight.contiguous(), ", ".join(notes)


def _encoder_of(model: nn.Module) -> tuple[nn.Module, str]:
    """The encoder whose weights transfer: a bare ViT, or any model's `.encoder` (our ViT models, nnFormer)."""
    if isinstance(model, ViT):
        return model, ""
    if isinstance(getattr(model, "encoder", None), nn.Module):
        return model.encoder, "encoder."
    raise TypeError(f"{type(model).__name__} has no encoder (a ViT, or a model with an `.encoder`).")


def _grid_of(num_tokens: int, like: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """Guess the source patch grid of a position embedding with `num_tokens` grid tokens (square/cubic, or
    the target's own grid)."""
    if num_tokens == math.prod(like):
        return like
    for d in (spatial_dims, 2, 3):
        side = round(num_tokens ** (1 / d))
        if side**d == num_tokens:
            return (side,) * d
    raise ValueError(f"pos_embed: cannot infer the patch grid of {num_tokens} tokens.")


def load_pretrained_encoder(model: nn.Module, path: str | os.PathLike, source: str = "mae") -> LoadReport:
    """Load pre-trained weights into `model` (MAE, ViTClassifier, UNETR or a bare ViT) and report what happened.

    source="mae": a checkpoint of one of our models. Into an MAE everything loads (decoder included, to resume
    pre-training); into any other model only the `encoder.*` keys are used (the rest is reported unexpected).
    source="imagenet": a timm-named ViT file; its encoder keys map to `encoder.*`, `head.*` etc. are unexpected.
    """
    if source not in ("mae", "imagenet"):
        raise ValueError(f"source must be 'mae' or 'imagenet', got {source!r}.")
    encoder, prefix = _encoder_of(model)
    file_sd, origin = monai_to_timm(read_state_dict(path))
    target = model.state_dict()
    report = LoadReport(source=f"{path} ({source})", encoder_prefix=prefix)
    if any(origin[k] != k for k in origin):
        report.adapted.append("names: MONAI ViT/UNETR naming read as timm's")
    whole_model = source == "mae" and not isinstance(model, ViT) and any(k.startswith("decoder_") for k in target)
    pick: dict[str, torch.Tensor] = {}
    for key, value in file_sd.items():
        if whole_model and key in target:
            name = key
        elif key.startswith("encoder."):
            name = prefix + key[len("encoder."):]
        elif key.startswith(_TIMM_ENCODER_PREFIXES):
            name = prefix + key
        else:
            name = None
        if name is None or name not in target:
            report.unexpected.append(origin[key])
            continue
        want = target[name].shape
        if name.endswith("patch_embed.proj.weight") and value.ndim == 2 and value.numel() == math.prod(want):
            value = _perceptron_to_conv(value, want)
            report.adapted.append(f"{name}: MONAI perceptron patch embedding as a convolution kernel")
        try:
            if name.endswith("patch_embed.proj.weight") and value.shape != want:
                value, note = adapt_patch_weight(value, want, origin[key])
                report.adapted.append(f"{name}: {note}")
            elif name.endswith("pos_embed") and value.shape != want:
                value, note = _adapt_pos_embed(value, want, encoder, origin[key])
                report.adapted.append(f"{name}: {note}")
            if value.shape != want:
                raise ValueError(f"{origin[key]}: shape {tuple(value.shape)} in the file does not match the "
                                 f"model's {tuple(want)} ({name}).")
        except ValueError as err:
            raise PretrainedWeightsError(f"{path}: {err} The model's size settings (model.embed_dim, patch_size, "
                                         "depth, num_heads, data sizes) must be those the file was trained "
                                         "with.") from None
        pick[name] = value
    _require_whole_encoder(target, pick, prefix, path, source, list(origin.values()))
    model.load_state_dict(pick, strict=False)
    report.loaded = sorted(pick)
    report.missing = [k for k in target if k not in pick]
    log.debug("%s", report)   # the caller shows it (selfmae.experiments.build_model_for prints it once)
    return report


def _require_whole_encoder(target: dict, pick: dict, prefix: str, path: str | os.PathLike, source: str,
                           file_keys: list[str]) -> None:
    """Raise PretrainedWeightsError unless every weight of the encoder but its final norm (for a ViT: the patch
    embedding and every block) is in `pick`; the message names the file, some of its keys and what was wanted."""
    needed = [k for k in target if k.startswith(prefix) and k.endswith(".weight") and k != f"{prefix}norm.weight"]
    missing = [k for k in needed if k not in pick]
    if not missing:
        return
    raise PretrainedWeightsError(
        f"{path}: model.init={source} would load {len(needed) - len(missing)} of the {len(needed)} encoder "
        f"weights (patch embedding and every block); missing e.g. {', '.join(missing[:4])}. The file holds "
        f"{len(file_keys)} tensors, e.g. {', '.join(file_keys[:6])}. Names read: " + "; ".join(NAMINGS) + ".")


def _adapt_pos_embed(value: torch.Tensor, want: torch.Size, encoder: ViT, key: str) -> tuple[torch.Tensor, str]:
    """Position embedding (1, [1 +] N', D) -> (1, 1 + N, D): add a zero class row if absent, resample the grid."""
    if value.ndim != 3 or value.shape[-1] != want[-1]:
        raise ValueError(f"{key}: shape {tuple(value.shape)} in the file does not match the model's {tuple(want)}.")
    notes = []
    n = value.shape[1]
    if not (n > 1 and _is_grid(n - 1)) and _is_grid(n):  # no class-token row (timm `no_embed_class` models)
        value = torch.cat([value.new_zeros(1, 1, value.shape[-1]), value], dim=1)
        notes.append("zero class-token row added")
    src_grid = _grid_of(value.shape[1] - 1, encoder.grid, encoder.spatial_dims)
    if tuple(src_grid) != tuple(encoder.grid):
        value = interpolate_pos_embed(value, src_grid, encoder.grid)
        notes.append(f"grid {'x'.join(map(str, src_grid))} resampled to {'x'.join(map(str, encoder.grid))}")
    return value, ", ".join(notes)


def _is_grid(n: int) -> bool:
    return any(round(n ** (1 / d)) ** d == n for d in (2, 3))
