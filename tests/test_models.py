"""Unit tests of selfmae.models at tiny sizes (patch 8, width 64, depth 4): shapes, masking, loss, weight transfer,
layer decay and bf16 autocast, in 2D and 3D."""
from __future__ import annotations

import math

import pytest
import torch

from selfmae.models import (
    MAE, UNETR, ViT, ViTClassifier, build_model, interpolate_pos_embed, load_pretrained_encoder, param_groups,
    random_masking, sincos_pos_embed,
)
from selfmae.models.vit import from_patches, to_patches

TINY = dict(patch_size=8, embed_dim=64, depth=4, num_heads=4)
DEC = dict(decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)
# the rest of a model section, as the configs give it (build_model has no defaults of its own)
SECTION = dict(mlp_ratio=4.0, drop_path=0.0, mask_ratio=0.75, norm_pix_loss=True, feature_size=16, skip_layers=None)
SIZE = {2: 64, 3: 32}
DIMS = pytest.mark.parametrize("dims", [2, 3])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def image(dims: int, batch: int = 2, channels: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, *(SIZE[dims],) * dims)


def tiny_mae(dims: int, channels: int = 1, **kw) -> MAE:
    return MAE(dims, channels, SIZE[dims], **TINY, **DEC, **kw)


@DIMS
def test_shapes_of_every_model(dims):
    n = (SIZE[dims] // 8) ** dims
    x = image(dims, channels=2)
    vit = ViT(dims, 2, SIZE[dims], **TINY)
    tokens, hidden = vit(x, return_layers=(1, 3))
    assert tokens.shape == (2, 1 + n, 64) and [h.shape for h in hidden] == [(2, 1 + n, 64)] * 2
    loss, pred, mask = tiny_mae(dims, 2)(x)
    assert loss.ndim == 0 and pred.shape == (2, n, 2 * 8**dims) and mask.shape == (2, n)
    assert ViTClassifier(dims, 2, SIZE[dims], num_classes=14, **TINY)(x).shape == (2, 14)
    unetr = UNETR(dims, 2, 5, SIZE[dims], feature_size=8, **TINY)
    assert unetr.skip_layers == (1, 3, 4)  # patch 8 -> 3 up-sampling stages
    assert unetr(x).shape == (2, 5, *x.shape[2:])


def test_unetr_patch16_matches_monai_layout():
    pytest.importorskip("einops")  # MONAI's ViT blocks need it
    from monai.networks.nets import UNETR as MonaiUNETR

    ours = UNETR(2, 1, 3, 64, patch_size=16, embed_dim=48, depth=12, num_heads=4, feature_size=4)
    theirs = MonaiUNETR(1, 3, 64, feature_size=4, hidden_size=48, mlp_dim=192, num_heads=4, spatial_dims=2)
    assert ours.skip_layers == (3, 6, 9, 12)
    count = lambda m, skip: sum(p.numel() for k, p in m.named_parameters() if not k.startswith(skip))  # noqa: E731
    assert count(ours, "encoder.") == count(theirs, "vit.")


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="spatial_dims"):
        ViT(4, 1, 32, 8)
    with pytest.raises(ValueError, match="divisible"):
        ViT(2, 1, 60, 8)
    with pytest.raises(ValueError, match="skip_layers"):
        UNETR(3, 1, 2, 32, skip_layers=(1, 2, 3, 4), **TINY)
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_mae(2, mask_ratio=1.0)
    with pytest.raises(ValueError, match="expected input"):
        ViT(2, 1, 64, 8, 64, 1, 4)(torch.randn(1, 1, 32, 32))


@DIMS
def test_patchify_unpatchify_identity(dims):
    x = image(dims, channels=3)
    patch, grid = (8,) * dims, (SIZE[dims] // 8,) * dims
    for channel_last in (True, False):
        assert torch.equal(from_patches(to_patches(x, patch, channel_last), patch, grid, channel_last), x)
    # patch order and channel-first layout are those of a strided convolution
    w = torch.randn(5, 3, *patch)
    conv = (torch.nn.functional.conv2d, torch.nn.functional.conv3d)[dims - 2](x, w, stride=8).flatten(2).transpose(1, 2)
    torch.testing.assert_close(to_patches(x, patch, channel_last=False) @ w.flatten(1).T, conv, rtol=1e-4, atol=1e-4)


def test_masking_keeps_expected_count_and_differs_across_samples():
    ids_keep, ids_restore, mask = random_masking(8, 64, 0.75, "cpu")
    assert ids_keep.shape == (8, 16) and mask.dtype == torch.float32
    assert torch.equal(mask.sum(1), torch.full((8,), 48.0))
    assert len({tuple(sorted(r.tolist())) for r in ids_keep}) == 8  # every sample has its own visible set
    assert torch.all(mask.gather(1, ids_keep) == 0)
    assert torch.equal(ids_restore.argsort(1)[:, :16], ids_keep)


def test_both_masking_draws_hide_the_same_count_and_report_the_visible_patches():
    """`mim.random_masking` serves both MAEs: hide the largest noise (ViT MAE) or the smallest (nnFormer MAE)."""
    from selfmae.models.mim import num_hidden, random_masking as draw

    for hide_lowest in (False, True):
        torch.manual_seed(0)
        ids_keep, ids_restore, mask = draw(4, 10, 0.75, "cpu", hide_lowest=hide_lowest)
        assert ids_keep.shape == (4, 2) and torch.equal(mask.sum(1), torch.full((4,), 8.0))
        assert torch.all(mask.gather(1, ids_keep) == 0)
        torch.manual_seed(0)
        noise = torch.rand(4, 10)
        hidden_noise = torch.where(mask.bool(), noise, torch.nan)
        visible_noise = torch.where(mask.bool(), torch.nan, noise)
        if hide_lowest:
            assert torch.all(hidden_noise.nan_to_num(-1).amax(1) < visible_noise.nan_to_num(2).amin(1))
        else:
            assert torch.all(hidden_noise.nan_to_num(2).amin(1) > visible_noise.nan_to_num(-1).amax(1))
    assert (num_hidden(16, 0.99), num_hidden(16, 0.0), num_hidden(8, 0.125)) == (15, 0, 1)  # one stays visible
    with pytest.raises(ValueError, match="mask_ratio"):
        num_hidden(16, 1.0)


def test_loss_ignores_visible_patches():
    mae = tiny_mae(2)
    x = image(2)
    _, pred, mask = mae(x)
    pred = pred.detach().requires_grad_(True)
    mae.loss(x, pred, mask).backward()
    visible = mask == 0
    assert pred.grad[visible].abs().max() == 0 and pred.grad[~visible].abs().max() > 0


@DIMS
def test_reconstruct_pastes_visible_patches(dims):
    mae = tiny_mae(dims, 2)
    x = image(dims, channels=2)
    _, pred, mask = mae(x)
    out = mae.reconstruct(x, pred, mask)
    assert all(v.shape == x.shape for v in out.values())
    visible = mae.unpatchify(mask.unsqueeze(-1).expand_as(pred)) == 0
    assert torch.equal(out["pasted"][visible], x[visible]) and torch.all(out["error"][visible] == 0)
    # a perfect normalised prediction is de-normalised back to the input on the visible patches
    perfect = mae.reconstruct(x, mae.target(x)[0], mask)["recon"]
    torch.testing.assert_close(perfect[visible], x[visible], atol=1e-4, rtol=1e-4)
    # and what is drawn for a hidden patch does not depend on the hidden pixels (no leak of their statistics)
    x2 = x.clone()
    x2[~visible] = x2[~visible] * 3.0 + 5.0
    torch.testing.assert_close(mae.reconstruct(x2, pred, mask)["recon"], out["recon"])


@DIMS
def test_hidden_patches_are_drawn_at_their_neighbours_brightness(dims):
    """A hidden patch in the bright half is drawn bright (its visible neighbours), not at the image's mean."""
    mae = tiny_mae(dims)
    x = torch.zeros(1, 1, *(SIZE[dims],) * dims)
    x[:, :, : SIZE[dims] // 2] = 10.0                      # first half of the first axis bright
    n = mae.grid
    mask = torch.zeros(1, math.prod(n))
    mask[0, 0] = 1                                          # the corner patch, inside the bright half
    mask[0, -1] = 1                                         # the opposite corner, inside the dark half
    out = mae.reconstruct(x, torch.zeros(1, math.prod(n), mae.patchify(x).shape[-1]), mask)["pasted"]
    p = SIZE[dims] // n[0]
    corner = (slice(None), slice(None)) + (slice(0, p),) * dims
    far = (slice(None), slice(None)) + (slice(-p, None),) * dims
    assert torch.allclose(out[corner], torch.tensor(10.0)) and torch.allclose(out[far], torch.tensor(0.0))
    # the figures' reference (the flat guess) is that same drawing, whatever the model predicts
    from selfmae.models.mim import flat_guess

    assert torch.equal(flat_guess(x, mask, mae.patch_size, mae.grid), out)


@pytest.mark.parametrize("dim", [64, 50, 32, 7])
def test_sincos_any_width_3d(dim):
    pe = sincos_pos_embed((4, 4, 4), dim)
    assert pe.shape == (1, 65, dim) and torch.all(pe[0, 0] == 0)
    assert len({tuple(r.tolist()) for r in pe[0, 1:].round(decimals=5)}) == 64  # every position distinct
    from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding

    if dim % 6 == 0:  # same frequencies as MONAI where MONAI is defined (it orders the axes differently)
        ref = build_sincos_position_embedding((4, 4, 4), dim, 3).detach()
        assert torch.allclose(pe[0, 1:].sort(dim=1)[0], ref[0].sort(dim=1)[0], atol=1e-5)


def test_pos_embed_interpolation():
    pe = sincos_pos_embed((6, 6), 32)
    assert interpolate_pos_embed(pe, (6, 6), (6, 6)) is pe
    smooth = torch.linspace(0, 1, 36).reshape(6, 6)
    smooth = (smooth + smooth.T).sin().reshape(1, 36, 1).expand(1, 36, 8)
    smooth = torch.cat([torch.zeros(1, 1, 8), smooth], 1)
    back = interpolate_pos_embed(interpolate_pos_embed(smooth, (6, 6), (12, 12)), (12, 12), (6, 6))
    assert (back - smooth).abs().max() < 0.05 and torch.equal(back[:, 0], smooth[:, 0])
    cube = interpolate_pos_embed(smooth, (6, 6), (3, 3, 4))
    planes = cube[0, 1:].reshape(3, 3, 4, 8)
    assert cube.shape == (1, 37, 8) and torch.equal(planes[..., 0, :], planes[..., 3, :])
    ramp = torch.arange(6.0)
    field = (0.1 * (ramp[:, None, None] + ramp[None, :, None] - ramp[None, None, :])).sin().reshape(1, 216, 1)
    field = torch.cat([torch.zeros(1, 1, 1), field], 1)
    back3 = interpolate_pos_embed(interpolate_pos_embed(field, (6, 6, 6), (12, 12, 12)), (12, 12, 12), (6, 6, 6))
    assert (back3 - field).abs().max() < 0.05


def write_timm_vit(path, embed_dim=64, depth=4, patch=16, grid=4, in_chans=3):
    """A random ViT state dict in timm naming (what an ImageNet ViT-B/16 .pth holds), saved to `path`."""
    d, sd = embed_dim, {
        "patch_embed.proj.weight": torch.randn(embed_dim, in_chans, patch, patch),
        "patch_embed.proj.bias": torch.randn(embed_dim),
        "cls_token": torch.randn(1, 1, embed_dim),
        "pos_embed": torch.randn(1, 1 + grid * grid, embed_dim),
        "norm.weight": torch.randn(embed_dim), "norm.bias": torch.randn(embed_dim),
        "head.weight": torch.randn(1000, embed_dim), "head.bias": torch.randn(1000),
    }
    for i in range(depth):
        for name, shape in [("norm1", (d,)), ("attn.qkv", (3 * d, d)), ("attn.proj", (d, d)), ("norm2", (d,)),
                            ("mlp.fc1", (4 * d, d)), ("mlp.fc2", (d, 4 * d))]:
            sd[f"blocks.{i}.{name}.weight"] = torch.randn(shape)
            sd[f"blocks.{i}.{name}.bias"] = torch.randn(shape[0])
    torch.save(sd, path)
    return sd


@DIMS
def test_imagenet_file_loads_with_inflation_and_channel_adaptation(tmp_path, dims):
    sd = write_timm_vit(tmp_path / "vit.pth")
    in_channels = {2: 1, 3: 4}[dims]
    model = UNETR(dims, in_channels, 2, 32, patch_size=16, embed_dim=64, depth=4, num_heads=4, feature_size=4)
    report = load_pretrained_encoder(model, tmp_path / "vit.pth", source="imagenet")
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    assert not [k for k in report.missing if k.startswith("encoder.")]
    enc = model.encoder
    torch.testing.assert_close(enc.blocks[2].attn.qkv.weight, sd["blocks.2.attn.qkv.weight"])
    # a constant image gives the same patch response as the RGB original (3 channels, 2D) did
    w = enc.patch_embed.proj.weight
    assert w.shape == (64, in_channels, *(16,) * dims)
    torch.testing.assert_close(w.flatten(1).sum(1), sd["patch_embed.proj.weight"].flatten(1).sum(1), rtol=1e-4, atol=1e-3)
    assert enc.pos_embed.shape == (1, 1 + 2**dims, 64) and torch.equal(enc.pos_embed[:, 0], sd["pos_embed"][:, 0])
    assert any("inflated" in a for a in report.adapted) == (dims == 3)


def test_mae_checkpoint_transfers_every_encoder_key(tmp_path):
    mae = tiny_mae(3)
    torch.save({"model": mae.state_dict(), "epoch": 3}, tmp_path / "mae.pt")  # the engine's checkpoint format
    unetr = UNETR(3, 1, 14, 32, feature_size=8, **TINY)
    report = load_pretrained_encoder(unetr, tmp_path / "mae.pt", source="mae")
    encoder_keys = {k for k in unetr.state_dict() if k.startswith("encoder.")}
    assert set(report.loaded) == encoder_keys and not encoder_keys & set(report.missing)
    assert all(k.startswith(("decoder_", "mask_token")) for k in report.unexpected)
    torch.testing.assert_close(unetr.encoder.blocks[3].mlp.fc2.weight, mae.encoder.blocks[3].mlp.fc2.weight)
    # into a classifier, encoder.norm is unexpected (global pool + fc_norm); into an MAE, everything loads
    cls_report = load_pretrained_encoder(ViTClassifier(3, 1, 32, 2, **TINY), tmp_path / "mae.pt")
    assert "encoder.norm.weight" in cls_report.unexpected
    full = load_pretrained_encoder(tiny_mae(3), tmp_path / "mae.pt")
    assert not full.missing and not full.unexpected


def test_shape_mismatch_names_the_file_and_the_key(tmp_path):
    from selfmae.models.transfer import PretrainedWeightsError

    torch.save(tiny_mae(2).state_dict(), tmp_path / "mae.pth")
    wider = ViTClassifier(2, 1, 64, 2, patch_size=8, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
    with pytest.raises(PretrainedWeightsError,
                       match=r"mae\.pth: encoder\.blocks\.0\.mlp\.fc1\.weight.*\(256, 64\).*\(128, 64\)"):
        load_pretrained_encoder(wider, tmp_path / "mae.pth")
    odd = tiny_mae(2).state_dict()   # a position embedding no resampling can fit (another width)
    odd["encoder.pos_embed"] = torch.zeros(1, 65, 48)
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(PretrainedWeightsError, match=r"odd\.pth: encoder\.pos_embed: .*\(1, 65, 48\).*model.embed_dim"):
        load_pretrained_encoder(tiny_mae(2), tmp_path / "odd.pth")


@pytest.mark.parametrize("name", ["mae", "vit_classifier", "unetr"])
def test_layer_decay_groups_cover_every_parameter_once(name):
    data = {"spatial_dims": 3, "in_channels": 1, "roi_size": [32, 32, 32], "dataset": "btcv", "organs": 8}
    model = build_model({"name": name, **TINY, **DEC, **SECTION, "num_classes": 3}, data)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75, lr=1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    by_name = {n: g for g in groups for n in g["param_names"]}
    assert by_name["encoder.pos_embed"]["weight_decay"] == 0 and by_name["encoder.blocks.0.norm1.weight"]["weight_decay"] == 0
    assert by_name["encoder.blocks.3.attn.qkv.weight"]["weight_decay"] == 0.05
    assert by_name["encoder.patch_embed.proj.weight"]["lr_scale"] == pytest.approx(0.75**5)
    assert by_name["encoder.blocks.3.attn.qkv.weight"]["lr_scale"] == pytest.approx(0.75)
    head = [n for n in by_name if not n.startswith("encoder.")]
    assert head and all(by_name[n]["lr_scale"] == 1.0 for n in head)
    torch.optim.AdamW(groups)  # the groups are valid optimizer input


def test_build_model_reads_config_sections():
    data2 = {"spatial_dims": 2, "in_channels": 1, "crop": 64, "dataset": "cxr14"}
    mae = build_model({"name": "mae", **TINY, **DEC, **SECTION, "mask_ratio": 0.5}, data2)
    assert isinstance(mae, MAE) and mae.mask_ratio == 0.5 and mae.encoder.img_size == (64, 64)
    seg = build_model({"name": "unetr", **TINY, **SECTION, "feature_size": 8},
                      {"spatial_dims": 3, "in_channels": 4, "roi_size": [32, 32, 32], "dataset": "brats"})
    assert seg(torch.randn(1, 4, 32, 32, 32)).shape == (1, 3, 32, 32, 32)
    with pytest.raises(ValueError, match="model.name"):
        build_model({"name": "resnet"}, data2)
    from selfmae.config import ConfigError

    with pytest.raises(ConfigError, match=r"model.name='unetr'.*skip_layers"):   # settings the model refuses
        build_model({"name": "unetr", **TINY, **SECTION, "feature_size": 8, "skip_layers": [2, 4, 6]},
                    {"spatial_dims": 3, "in_channels": 4, "roi_size": [32, 32, 32], "dataset": "brats"})


@DIMS
def test_bf16_autocast_forward_backward(dims):
    mae = tiny_mae(dims)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = mae(image(dims))
    assert loss.dtype == torch.float32 and pred.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in mae.parameters() if p.requires_grad)


def test_bf16_training_curve_follows_fp32():
    x = image(2, batch=2)[..., :32, :32]

    def curve(bf16: bool) -> list[float]:
        torch.manual_seed(1)
        mae = MAE(2, 1, 32, 8, embed_dim=32, depth=2, num_heads=4, **DEC)
        opt = torch.optim.AdamW(param_groups(mae, 0.05), lr=2e-3)
        losses = []
        for step in range(20):
            torch.manual_seed(100 + step)  # the same masks in both runs
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = mae(x)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster than two contending ones on a shared CPU
    try:
        fp32, bf16 = curve(False), curve(True)
    finally:
        torch.set_num_threads(threads)
    assert sum(fp32[-5:]) < 0.8 * sum(fp32[:5]) and sum(bf16[-5:]) < 0.8 * sum(bf16[:5])
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.1 * max(fp32)
    assert math.isfinite(sum(bf16))


# --------------------------------------------------------------------------------------------- attention kernel
def test_attention_is_pytorchs_fused_kernel_in_fp32_and_two_matmuls_for_cpu_bf16():
    """fp32 (every earlier result) goes through F.scaled_dot_product_attention unchanged, bit for bit; bf16 on a CPU
    takes the matmul form (faster there, issue #15), which agrees with the fp32 kernel to bf16 rounding."""
    import torch.nn.functional as F

    from selfmae.models.attention import attention, uses_fused_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    bias = torch.randn(3, 10, 10)
    for mask in (None, bias):
        assert uses_fused_kernel(q)
        assert torch.equal(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        low = [t.bfloat16() for t in (q, k, v)]
        assert not uses_fused_kernel(low[0])
        out = attention(*low, None if mask is None else mask.bfloat16())
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert out.dtype == torch.bfloat16 and out.shape == ref.shape
        assert (out.float() - ref).abs().max() < 0.05, (out.float() - ref).abs().max()
    # the gradient flows through the matmul form too
    low = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    attention(*low).float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad.float()).all() for t in low)


def test_a_vit_under_cpu_bf16_autocast_runs_the_matmul_attention_and_stays_close_to_fp32(monkeypatch):
    from selfmae.models import attention as attention_mod

    torch.manual_seed(0)
    model = ViT(2, 1, 16, 4, embed_dim=32, depth=2, num_heads=4)
    x = torch.randn(2, 1, 16, 16)
    ref = model(x)
    fused = attention_mod.F.scaled_dot_product_attention
    calls = []
    monkeypatch.setattr(attention_mod.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[0].dtype) or fused(*a, **k))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert calls == []                      # two blocks, no fused call under bf16
    assert (out.float() - ref).abs().max() < 0.1
    model(x)
    assert calls == [torch.float32] * 2     # and fp32 calls it once per block
