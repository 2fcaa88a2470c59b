"""nnFormer segmenter and its MAE: shapes (tiny on CPU, paper size on the meta device), masking, loss, transfer."""

import pytest
import torch

from _nnformer_sizes import TINY, paper_size  # tests/ is on sys.path under pytest

from selfmae.models.nnformer import NnFormer, NnFormerBlock
from selfmae.models.nnformer_geometry import stage_geometry
from selfmae.models.nnformer_mae import NnFormerMAE
from selfmae.models.transfer import PretrainedWeightsError, load_pretrained_encoder

PAPER = paper_size()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _volume(batch: int, channels: int, size=TINY["img_size"]) -> torch.Tensor:
    return torch.randn(batch, channels, *size)


@pytest.mark.parametrize("channels", [1, 4])
def test_tiny_segmenter_forward_backward(channels):
    model = NnFormer(channels, 3, **TINY)
    out = model(_volume(1, channels))
    assert out.shape == (1, 3, *TINY["img_size"])
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_deep_supervision_outputs():
    model = NnFormer(1, 5, **TINY, deep_supervision=True)
    outs = model(_volume(1, 1))
    size = torch.tensor(TINY["img_size"])
    assert [o.shape for o in outs] == [(1, 5, *(size // 2**s).tolist()) for s in range(len(TINY["depths"]) - 1)]
    model.eval()
    assert model(_volume(1, 1)).shape == (1, 5, *TINY["img_size"])


def test_paper_size_on_meta_device():
    with torch.device("meta"):
        seg = NnFormer(1, 14, **PAPER, deep_supervision=True)
        outs = seg(torch.empty(1, 1, *PAPER["img_size"]))
        mae = NnFormerMAE(1, **PAPER)
        loss, pred, mask = mae(torch.empty(1, 1, *PAPER["img_size"]))
    assert outs[0].shape == (1, 14, 64, 128, 128)
    assert [o.shape[2:] for o in outs[1:]] == [(32, 64, 64), (16, 32, 32)]
    assert mae.grid == (4, 4, 4) and mae.cell == (16, 32, 32)
    assert pred.shape == (1, 64, 16 * 32 * 32) and mask.shape == (1, 64) and loss.shape == ()


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_masking_hides_exact_count_per_sample(ratio):
    mae = NnFormerMAE(1, **TINY)
    mask = mae.draw_mask(8, ratio, torch.device("cpu"))
    assert mask.shape == (8, mae.num_cells)
    assert (mask.sum(1) == round(mae.num_cells * ratio)).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1  # drawn per sample
    _, _, fwd_mask = mae(_volume(1, 1), mask_ratio=ratio)
    assert (fwd_mask.sum(1) == round(mae.num_cells * ratio)).all()
    with pytest.raises(ValueError, match="mask_ratio"):
        mae.draw_mask(1, 1.0, torch.device("cpu"))
    with pytest.raises(ValueError, match="mask_ratio"):
        NnFormerMAE(1, **TINY, mask_ratio=-0.1)


def test_hidden_voxels_do_not_reach_the_encoder():
    mae = NnFormerMAE(1, **TINY)
    x = _volume(2, 1)
    torch.manual_seed(1)
    _, pred, mask = mae(x)
    hidden = mae.unpatchify(mask[..., None].expand(-1, -1, pred.shape[-1]).float()).bool()
    other = torch.where(hidden, torch.randn_like(x) * 5, x)  # different content in the hidden cells only
    torch.manual_seed(1)  # same mask
    _, pred2, mask2 = mae(other)
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(pred, pred2)


def test_loss_ignores_visible_cells():
    mae = NnFormerMAE(1, **TINY)
    loss, pred, mask = mae(_volume(2, 1))
    (grad,) = torch.autograd.grad(loss, pred)
    per_cell = grad.abs().sum(-1)
    assert (per_cell[mask == 0] == 0).all()
    assert (per_cell[mask == 1] > 0).all()


def test_reconstruct_volumes():
    mae = NnFormerMAE(4, **TINY)
    x = _volume(2, 4)
    _, pred, mask = mae(x)
    out = mae.reconstruct(x, pred, mask)
    assert set(out) == {"masked", "recon", "pasted", "error"}
    assert all(v.shape == x.shape for v in out.values())
    visible = out["masked"] != 0
    torch.testing.assert_close(out["pasted"][visible], x[visible])
    assert (out["error"][visible] == 0).all()


def test_reconstruct_never_shows_hidden_statistics():
    """Changing what a hidden cell holds leaves its drawn reconstruction unchanged (the ViT MAE's rule: hidden cells
    take the mean/std of their visible neighbours, `neighbour_stats`), while a visible cell shows its own content."""
    mae = NnFormerMAE(1, **TINY)
    x = _volume(1, 1)
    mask = torch.zeros(1, mae.num_cells)
    mask[0, 0] = 1
    pred = torch.randn(1, mae.num_cells, mae.patchify(x).shape[-1])
    hidden = mae._upsample(mask, mae.cell).unsqueeze(1).bool()
    x2 = torch.where(hidden, 5 * x + 3, x)                 # other content, other mean/std, in the hidden cell only
    torch.testing.assert_close(mae.reconstruct(x2, pred, mask)["recon"][hidden],
                               mae.reconstruct(x, pred, mask)["recon"][hidden])


def test_encoder_transfer_loads_every_key(tmp_path):
    """A pre-trained NnFormerMAE checkpoint initialises the segmenter's whole encoder (the path fine-tuning takes)."""
    mae, seg = NnFormerMAE(1, **TINY), NnFormer(1, 3, **TINY)
    torch.save({"model": mae.state_dict()}, tmp_path / "mae.pt")
    report = load_pretrained_encoder(seg, tmp_path / "mae.pt")
    assert set(report.loaded) == {f"encoder.{k}" for k in seg.encoder.state_dict()}
    assert set(report.unexpected) == {"mask_token", "head.weight", "head.bias"}
    for k, v in mae.encoder.state_dict().items():
        assert torch.equal(seg.encoder.state_dict()[k], v), k
    deeper = NnFormer(1, 3, **{**TINY, "depths": (2, 3, 2)})
    with pytest.raises(PretrainedWeightsError, match="missing"):
        load_pretrained_encoder(deeper, tmp_path / "mae.pt")


def test_bf16_autocast_training_step():
    mae = NnFormerMAE(1, **TINY)
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = mae(_volume(1, 1))
    assert loss.dtype == torch.float32 and pred.dtype == torch.bfloat16
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_shifted_window_mask_blocks_wrapped_neighbours():
    """Shifted windows wrap around the grid; the mask must stop tokens attending across the wrap."""
    geo = stage_geometry((16, 16, 16), 2, [4], 1)[0]  # grid 8, window 4, shift 2
    block = NnFormerBlock(8, 2, geo, shifted=True).eval()
    x = torch.randn(1, 8, 8, 8, 8)

    def changed(pos):
        y = x.clone()
        y[(0, *pos)] += 10 * torch.randn(8)  # not a constant: LayerNorm would remove that
        return not torch.allclose(block(y)[0, 0, 0, 0], block(x)[0, 0, 0, 0])

    assert changed((1, 1, 1))      # same shifted window, same side of the wrap
    assert not changed((7, 0, 0))  # same rolled window, but across the wrap: masked
    assert not changed((2, 0, 0))  # a different shifted window


def test_geometry_errors():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        NnFormer(1, 2, img_size=(30, 32, 32), **{k: v for k, v in TINY.items() if k != "img_size"})
    with pytest.raises(ValueError, match="does not divide"):
        stage_geometry((48, 48, 48), 2, [4, 4, 4], 3)  # grid 24/12/6, window 4 does not divide 6
    with pytest.raises(ValueError, match="img_size"):
        NnFormer(1, 2, **TINY)(torch.randn(1, 1, 16, 16, 16))
