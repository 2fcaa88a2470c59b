"""Models: one ViT (2D/3D) for MAE pre-training, classification and UNETR; nnFormer; weight transfer.

`build_model(model_cfg, data_cfg)` turns the config sections into a module (see .notes/CONTRACTS.md). The sizes
and settings come from the sections as the YAMLs in selfmae/configs/ define them: no default is repeated here.
"""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from selfmae.data.registry import input_size, spec_of

from .classifier import ViTClassifier
from .describe import architecture_name
from .layer_decay import param_groups
from .mae import MAE, random_masking
from .transfer import LoadReport, load_pretrained_encoder, read_state_dict
from .unetr import UNETR
from .pos_embed import interpolate_pos_embed, sincos_pos_embed
from .vit import ViT

__all__ = [
    "ViT", "MAE", "ViTClassifier", "UNETR", "build_model", "img_size_of", "load_pretrained_encoder", "LoadReport",
    "read_state_dict", "param_groups", "random_masking", "sincos_pos_embed", "interpolate_pos_embed",
    "architecture_name", "nnformer_size",
]

log = logging.getLogger(__name__)

VIT_MODELS = ("mae", "vit_classifier", "unetr")
OTHER_MODELS = ("nnformer", "nnformer_mae", "swin_unetr")


def img_size_of(data_cfg: dict) -> tuple[int, ...]:
    """Network input size from the data section (`selfmae.data.registry.input_size`: 3D `roi_size`; 2D `crop`,
    else `roi_size`, else `resize`)."""
    return input_size(data_cfg)


def _out_channels(model_cfg: dict, data_cfg: dict) -> int:
    """model.out_channels, or (null) what the dataset's labels need (its registry entry; ValueError if unknown)."""
    if model_cfg.get("out_channels") is not None:
        return int(model_cfg["out_channels"])
    return spec_of(data_cfg).out_channels(data_cfg)


def build_model(model_cfg: dict, data_cfg: dict) -> nn.Module:
    """Build the model named by `model_cfg["name"]` for the data described by `data_cfg`.

    ViT-based models: mae | vit_classifier | unetr; nnformer | nnformer_mae (`selfmae.models.nnformer`,
    `nnformer_mae`); swin_unetr from MONAI. Raises KeyError for a key the model needs that the sections lack, and
    `selfmae.config.ConfigError` (naming model.name) for settings the model refuses (e.g. UNETR skip_layers beyond
    model.depth). If `model_cfg["pretrained"]` names a file, it is loaded with
    `load_pretrained_encoder(source=model_cfg["init"])` (`PretrainedWeightsError` where it does not fit) and the
    report kept as `.load_report`.
    """
    from selfmae.config import ConfigError

    name = model_cfg.get("name")
    try:
        model = (_build_other if name in OTHER_MODELS else _build_vit)(name, model_cfg, data_cfg)
    except ValueError as err:
        raise ConfigError(f"model settings (model.name={name!r}) do not make a model for this data: {err}") from err
    if model_cfg.get("pretrained"):
        model.load_report = load_pretrained_encoder(model, model_cfg["pretrained"], source=model_cfg.get("init") or "mae")
    return model


def _build_vit(name: str, model_cfg: dict, data_cfg: dict) -> nn.Module:
    if name not in VIT_MODELS:
        raise ValueError(f"model.name must be one of {VIT_MODELS + OTHER_MODELS}, got {name!r}.")
    common: dict[str, Any] = dict(
        spatial_dims=int(data_cfg["spatial_dims"]),
        in_channels=spec_of(data_cfg).in_channels(data_cfg),
        img_size=img_size_of(data_cfg),
        patch_size=model_cfg["patch_size"],
        embed_dim=int(model_cfg["embed_dim"]),
        depth=int(model_cfg["depth"]),
        num_heads=int(model_cfg["num_heads"]),
        mlp_ratio=float(model_cfg["mlp_ratio"]),
    )
    if name == "mae":
        if float(model_cfg.get("drop_path") or 0.0) != 0.0:   # the MAE encoder has no stochastic depth (as MAE's)
            raise ValueError(f"model.drop_path={model_cfg['drop_path']} is not supported for model mae (its "
                             "encoder pre-trains without stochastic depth, as facebookresearch/mae); set it to 0.0 "
                             "and use drop_path when fine-tuning (unetr, vit_classifier)")
        model: nn.Module = MAE(
            **common,
            decoder_embed_dim=int(model_cfg["decoder_embed_dim"]),
            decoder_depth=int(model_cfg["decoder_depth"]),
            decoder_num_heads=int(model_cfg["decoder_num_heads"]),
            mask_ratio=float(model_cfg["mask_ratio"]),
            norm_pix_loss=bool(model_cfg["norm_pix_loss"]),
        )
    elif name == "vit_classifier":
        model = ViTClassifier(**common, num_classes=int(model_cfg["num_classes"]),
                              drop_path=float(model_cfg["drop_path"]))
    else:
        model = UNETR(**common, out_channels=_out_channels(model_cfg, data_cfg),
                      drop_path=float(model_cfg["drop_path"]),
                      feature_size=int(model_cfg["feature_size"]), skip_layers=model_cfg.get("skip_layers"))
    return model


def _build_other(name: str, model_cfg: dict, data_cfg: dict) -> nn.Module:
    """Models without our ViT, imported lazily so that a missing optional part fails only when it is asked for."""
    if name in ("nnformer", "nnformer_mae"):
        return _build_nnformer(name, model_cfg, data_cfg)
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=spec_of(data_cfg).in_channels(data_cfg),
        out_channels=_out_channels(model_cfg, data_cfg),
        feature_size=int(model_cfg["feature_size"]),
        spatial_dims=int(data_cfg["spatial_dims"]),
        drop_rate=0.0,
        dropout_path_rate=float(model_cfg["drop_path"]),
    )


def nnformer_size(model_cfg: dict, data_cfg: dict) -> dict[str, Any]:
    """The size kwargs of `NnFormer` / `NnFormerMAE` from the config sections: img_size (= data.roi_size, voxels),
    patch_size, embed_dim, depths, num_heads, window_sizes. Raises KeyError naming a missing key."""
    return dict(img_size=tuple(data_cfg["roi_size"]), patch_size=tuple(model_cfg["patch_size"]),
                embed_dim=int(model_cfg["embed_dim"]), depths=tuple(model_cfg["depths"]),
                num_heads=tuple(model_cfg["num_heads"]), window_sizes=tuple(model_cfg["window_sizes"]))


def _build_nnformer(name: str, model_cfg: dict, data_cfg: dict) -> nn.Module:
    """nnFormer ("nnformer") or its MAE ("nnformer_mae"); input size = data.roi_size."""
    from .nnformer import NnFormer
    from .nnformer_mae import NnFormerMAE

    common = dict(in_channels=int(data_cfg["in_channels"]), **nnformer_size(model_cfg, data_cfg),
                  drop_path=float(model_cfg["drop_path"]))
    if name == "nnformer_mae":
        return NnFormerMAE(**common, mask_ratio=float(model_cfg["mask_ratio"]),
                           norm_pix_loss=bool(model_cfg["norm_pix_loss"]))
    return NnFormer(**common, out_channels=int(model_cfg["out_channels"]),
                    deep_supervision=bool(model_cfg["deep_supervision"]))
