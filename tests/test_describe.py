"""Architecture names: what a config builds, named so that a tiny ViT is never mistaken for a ViT-B/16."""
from __future__ import annotations

import pytest

from selfmae.config import load_config
from selfmae.models import architecture_name

VIT_B16 = {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12}


@pytest.mark.parametrize("model_cfg, expected", [
    ({"name": "vit_classifier", **VIT_B16}, "ViT-B/16"),
    ({"name": "vit_classifier", **VIT_B16, "patch_size": [16, 16, 16]}, "ViT-B/16"),
    ({"name": "vit_classifier", **VIT_B16, "patch_size": 8}, "ViT-B/8"),
    ({"name": "vit_classifier", **VIT_B16, "num_heads": 8}, "ViT 12x768, patch 16"),   # not a standard B
    ({"name": "vit_classifier", "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4}, "ViT 4x64, patch 4"),
    ({"name": "unetr", **VIT_B16, "feature_size": 16}, "UNETR (ViT-B/16)"),
    ({"name": "unetr", **VIT_B16, "feature_size": 32}, "UNETR (ViT-B/16, features 32)"),
    ({"name": "unetr", "patch_size": 8, "embed_dim": 64, "depth": 4, "num_heads": 4, "feature_size": 16},
     "UNETR (ViT 4x64, patch 8, features 16)"),
    ({"name": "mae", "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4, "decoder_depth": 2,
      "decoder_embed_dim": 32}, "MAE (ViT 4x64, patch 4; decoder 2x32)"),
    ({"name": "nnformer", "embed_dim": 24, "depths": [2, 2, 2]}, "nnFormer (C=24, depths 2-2-2)"),
    ({"name": "nnformer_mae", "embed_dim": 96, "depths": [2, 2, 2, 2]}, "nnFormer MAE (C=96, depths 2-2-2-2)"),
    ({"name": "swin_unetr", "feature_size": 12}, "Swin-UNETR (features 12)"),
    ({"name": "something_else"}, "something_else"),
])
def test_architecture_name(model_cfg, expected):
    assert architecture_name(model_cfg) == expected


def test_paper_profile_is_vit_b16_and_tiny_is_not():
    assert architecture_name(load_config("finetune_cxr14", "paper")["model"]) == "ViT-B/16"
    assert architecture_name(load_config("finetune_btcv", "paper")["model"]) == "UNETR (ViT-B/16)"
    for experiment in ("finetune_cxr14", "finetune_btcv", "finetune_brats", "finetune_medmnist"):
        name = architecture_name(load_config(experiment, "tiny")["model"])
        assert "ViT-B" not in name and "ViT " in name, (experiment, name)
    tiny = load_config("finetune_nnformer_btcv", "tiny")["model"]
    assert architecture_name(tiny) == f"nnFormer (C={tiny['embed_dim']}, depths {'-'.join(map(str, tiny['depths']))})"
