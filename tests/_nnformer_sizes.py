"""nnFormer sizes of the tests: TINY (32^3 volumes, a fwd+bwd well under a second on CPU; its bottleneck grid is
4x4x4, 64 MAE cells; the golden losses of test_mim_frozen.py were computed at it) and PAPER, the paper profile of
finetune_nnformer_btcv.yaml (nnFormer's Synapse setting: crop 64x128x128, patch 2x4x4, windows 4/4/8/4)."""
from selfmae.config import load_config
from selfmae.models import nnformer_size

TINY = dict(img_size=(32, 32, 32), patch_size=(2, 2, 2), embed_dim=24, depths=(2, 2, 2), num_heads=(1, 2, 4),
            window_sizes=(4, 4, 4))


def paper_size() -> dict:
    """NnFormer size kwargs of the paper profile, read from the config."""
    cfg = load_config("finetune_nnformer_btcv", "paper")
    return nnformer_size(cfg["model"], cfg["data"])
