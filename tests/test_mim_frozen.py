"""The masked-image-modelling core must not change results: finished runs are reused by config hash, so a seed
has to give the same masks, losses, gradients and figures as the code that trained them.

Below is a frozen copy of both MAEs' masking, norm-pix targets, loss and `reconstruct` as they were before the
shared core (`selfmae.models.mim`; the code of commit 423183a). Each test runs the model and the frozen copy on
the same weights, input and seed and asks for equality to the bit (`torch.equal`) in fp32; the golden masks and
losses were computed by that code (masks are exact on any machine; losses within 1e-4 relative, since another CPU
kind's matmul kernels and vector width move the last bits of every layer - a changed mask or target moves a loss
by far more; the bitwise check is the comparison with the frozen copy).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _nnformer_sizes import TINY  # tests/ is on sys.path under pytest

from selfmae.models import MAE
from selfmae.models.nnformer_mae import NnFormerMAE
from selfmae.models.vit import from_patches, to_patches

# ---- frozen copy of the pre-core code ------------------------------------------------------------------------------


def _old_vit_masking(batch, num_patches, mask_ratio, device):
    keep = max(num_patches - int(round(num_patches * mask_ratio)), 1)
    ids_shuffle = torch.rand(batch, num_patches, device=device).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    return ids_shuffle[:, :keep], ids_restore, (ids_restore >= keep).float()


def _old_vit_target(m, x):
    t = to_patches(x.float(), m.patch_size)
    if not m.norm_pix_loss:
        return t, torch.zeros_like(t[..., :1]), torch.ones_like(t[..., :1])
    var, mean = torch.var_mean(t, dim=-1, keepdim=True)
    std = (var + 1e-6).sqrt()
    return (t - mean) / std, mean, std


def _old_vit_forward(m, x, mask_ratio):
    ids_keep, ids_restore, mask = _old_vit_masking(x.shape[0], m.encoder.num_patches, mask_ratio, x.device)
    y = m.decoder_embed(m.encoder(x, ids_keep=ids_keep))
    b, k1, d = y.shape
    tokens = torch.cat([y[:, 1:], m.mask_token.to(y.dtype).expand(b, ids_restore.shape[1] + 1 - k1, d)], dim=1)
    tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
    y = torch.cat([y[:, :1], tokens], dim=1) + m.decoder_pos_embed
    for block in m.decoder_blocks:
        y = block(y)
    pred = m.decoder_pred(m.decoder_norm(y[:, 1:]))
    per_patch = (pred.float() - _old_vit_target(m, x)[0]).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0), pred, mask


@torch.no_grad()
def _old_vit_reconstruct(m, x, pred, mask):
    _, mean, std = _old_vit_target(m, x)
    mean, std = _old_display_stats(mean, std, mask, m.grid)
    recon = from_patches(pred.float() * std + mean, m.patch_size, m.grid)
    hidden = from_patches(mask.float().unsqueeze(-1).expand(-1, -1, pred.shape[-1]), m.patch_size, m.grid)
    x = x.float()
    pasted = torch.lerp(x, recon, hidden)
    return {"masked": x * (1 - hidden), "recon": recon, "pasted": pasted, "error": (pasted - x).abs()}


def _old_nn_masking(m, batch, mask_ratio, device):
    n_hide = round(m.num_cells * mask_ratio)
    order = torch.argsort(torch.rand(batch, m.num_cells, device=device), dim=1)
    return torch.zeros(batch, m.num_cells, device=device).scatter_(1, order[:, :n_hide], 1.0)


def _old_nn_upsample(m, mask, factor):
    out = mask.view(-1, *m.grid)
    for ax, f in enumerate(factor, start=1):
        out = out.repeat_interleave(f, dim=ax)
    return out


def _old_nn_patchify(m, x):
    (gd, gh, gw), (cd, ch, cw) = m.grid, m.cell
    x = x.reshape(x.shape[0], x.shape[1], gd, cd, gh, ch, gw, cw)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(x.shape[0], m.num_cells, -1)


def _old_nn_unpatchify(m, p):
    (gd, gh, gw), (cd, ch, cw) = m.grid, m.cell
    x = p.reshape(p.shape[0], gd, gh, gw, cd, ch, cw, m.in_channels)
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(p.shape[0], m.in_channels, *m.encoder.img_size)


def _old_nn_stats(m, x):
    target = _old_nn_patchify(m, x.float())
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    return target, mean, (var + 1e-6).sqrt()


def _old_nn_forward(m, x, mask_ratio):
    mask = _old_nn_masking(m, x.shape[0], mask_ratio, x.device)
    hidden = _old_nn_upsample(m, mask, m.cell).unsqueeze(1).to(x.dtype)
    token_factor = tuple(c // p for c, p in zip(m.cell, m.encoder.patch_size))
    feats = m.encoder(x * (1 - hidden), _old_nn_upsample(m, mask, token_factor), m.mask_token)
    pred = m.head(feats[-1]).reshape(x.shape[0], m.num_cells, -1)
    target, mean, std = _old_nn_stats(m, x)
    if m.norm_pix_loss:
        target = (target - mean) / std
    per_cell = (pred.float() - target).pow(2).mean(-1)
    return (per_cell * mask).sum() / mask.sum(), pred, mask


@torch.no_grad()
def _old_nn_reconstruct(m, x, pred, mask):
    pred = pred.float()
    if m.norm_pix_loss:
        _, mean, std = _old_nn_stats(m, x)
        mean, std = _old_display_stats(mean, std, mask, m.grid)
        pred = pred * std + mean
    recon = _old_nn_unpatchify(m, pred)
    hidden = _old_nn_upsample(m, mask.float(), m.cell).unsqueeze(1)
    x = x.float()
    masked = x * (1 - hidden)
    pasted = masked + recon * hidden
    return dict(masked=masked, recon=recon, pasted=pasted, error=(pasted - x).abs())


def _old_display_stats(mean, std, mask, grid):
    hid = mask.bool().unsqueeze(-1)
    return (torch.where(hid, _old_neighbour_stats(mean, ~hid, grid), mean),
            torch.where(hid, _old_neighbour_stats(std, ~hid, grid), std))


def _old_neighbour_stats(stat, visible, grid):
    b = stat.shape[0]
    pool = F.avg_pool3d if len(grid) == 3 else F.avg_pool2d
    w = visible.float().reshape(b, 1, *grid)
    v = stat.float().reshape(b, 1, *grid) * w
    out = (v.flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)).reshape(b, *([1] * (len(grid) + 1)))
    out = out.expand_as(v).clone()
    found = torch.zeros_like(w, dtype=torch.bool)
    for k in range(3, 2 * max(grid) + 2, 2):
        pad = [k // 2] * (2 * len(grid))
        num, den = pool(F.pad(v, pad), k, 1), pool(F.pad(w, pad), k, 1)
        new = (den > 0) & ~found
        out = torch.where(new, num / den.clamp_min(1e-12), out)
        found |= new
        if bool(found.all()):
            break
    return out.reshape(b, -1, 1)


# ---- the comparison ------------------------------------------------------------------------------------------------


def _step(model, x, seed, forward):
    """(loss, pred, mask, {param name: grad}) of one forward + backward under `seed`."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, pred, mask = forward(x)
    loss.backward()
    return loss.detach(), pred.detach(), mask, {k: p.grad.clone() for k, p in model.named_parameters()
                                                if p.grad is not None}


def _assert_same(model, x, seed, old_forward, old_reconstruct, ratio):
    new = _step(model, x, seed, lambda v: model(v, mask_ratio=ratio))
    old = _step(model, x, seed, lambda v: old_forward(model, v, ratio))
    assert torch.equal(new[2], old[2]), "masks differ"
    assert new[0].dtype == torch.float32 and torch.equal(new[0], old[0]), (new[0].item(), old[0].item())
    assert torch.equal(new[1], old[1])
    assert new[3].keys() == old[3].keys() and len(new[3]) > 0
    for k in new[3]:
        assert torch.equal(new[3][k], old[3][k]), f"gradient of {k} differs"
    got, want = model.reconstruct(x, new[1], new[2]), old_reconstruct(model, x, old[1], old[2])
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    return new


def _vit(dims, channels, **kw):
    torch.manual_seed(0)
    return MAE(dims, channels, {2: 32, 3: 16}[dims], patch_size={2: 8, 3: 4}[dims], embed_dim=24, depth=2,
               num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, **kw)


def _nnformer(channels, **kw):
    torch.manual_seed(0)
    return NnFormerMAE(channels, **TINY, **kw)


def _input(channels, *size, batch=2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, channels, *size, generator=g) * 2 + torch.rand(batch, channels, *size, generator=g)


def _hidden(mask):
    return [torch.nonzero(m).flatten().tolist() for m in mask]


# golden values computed by the code before the shared core
VIT_GOLDEN = {  # (dims, channels, ratio, norm_pix) -> (hidden patches of sample 0 and 1, loss)
    (2, 1, 0.75, True): ([[0, 2, 3, 5, 7, 8, 9, 10, 11, 12, 14, 15], [0, 2, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15]],
                         1.3719706535339355),
    (2, 2, 0.75, False): ([[0, 2, 3, 5, 7, 8, 9, 10, 11, 12, 14, 15], [0, 2, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15]],
                          4.732298374176025),
    (3, 1, 0.125, True): ([[18, 20, 26, 35, 43, 44, 51, 52], [11, 16, 25, 33, 35, 42, 47, 58]], 1.3484514951705933),
    (3, 2, 0.5, True): ([[2, 3, 7, 9, 10, 11, 16, 18, 20, 22, 23, 25, 26, 27, 28, 30, 31, 32, 33, 34, 35, 40, 43, 44,
                          45, 48, 51, 52, 58, 59, 61, 62],
                         [1, 4, 5, 6, 8, 11, 12, 13, 14, 16, 19, 22, 23, 24, 25, 28, 29, 33, 34, 35, 39, 40, 42, 45,
                          47, 48, 49, 50, 55, 56, 58, 60]], 1.2258273363113403),
}
NN_GOLDEN = {  # (channels, ratio, norm_pix) -> (hidden cells of sample 0 and 1, loss)
    (1, 0.75, True): ([[0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17, 19, 21, 23, 24, 25, 27, 29, 31, 32, 33,
                        36, 37, 38, 39, 41, 42, 45, 46, 47, 48, 49, 50, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63],
                       [0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 13, 15, 17, 18, 19, 20, 21, 24, 26, 27, 29, 30, 31, 32, 36, 37,
                        38, 39, 40, 41, 43, 44, 46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63]],
                      1.0384796857833862),
    (2, 0.5, False): ([[0, 1, 4, 5, 6, 8, 12, 13, 14, 15, 17, 19, 21, 24, 29, 36, 37, 38, 39, 41, 42, 46, 47, 49, 50,
                        53, 54, 55, 56, 57, 60, 63],
                       [0, 2, 3, 7, 9, 10, 15, 17, 18, 20, 21, 26, 27, 30, 31, 32, 36, 37, 38, 41, 43, 44, 46, 51, 52,
                        53, 54, 57, 59, 61, 62, 63]], 4.386527061462402),
    (1, 0.125, True): ([[17, 19, 29, 39, 49, 50, 54, 63], [17, 26, 30, 31, 36, 37, 51, 62]], 1.0332516431808472),
}


@pytest.mark.parametrize("dims,channels,ratio,norm_pix", [(2, 1, 0.75, True), (2, 2, 0.75, False),
                                                          (3, 1, 0.125, True), (3, 2, 0.5, True)])
def test_vit_mae_is_unchanged(dims, channels, ratio, norm_pix):
    model = _vit(dims, channels, norm_pix_loss=norm_pix)
    x = _input(channels, *({2: 32, 3: 16}[dims],) * dims)
    loss, _, mask, _ = _assert_same(model, x, 7, _old_vit_forward, _old_vit_reconstruct, ratio)
    hidden, want = VIT_GOLDEN[dims, channels, ratio, norm_pix]
    assert _hidden(mask) == hidden
    assert loss.item() == pytest.approx(want, rel=1e-4, abs=0)


@pytest.mark.parametrize("channels,ratio,norm_pix", [(1, 0.75, True), (2, 0.5, False), (1, 0.125, True)])
def test_nnformer_mae_is_unchanged(channels, ratio, norm_pix):
    model = _nnformer(channels, norm_pix_loss=norm_pix)
    x = _input(channels, *TINY["img_size"], batch=2)
    loss, _, mask, _ = _assert_same(model, x, 7, _old_nn_forward, _old_nn_reconstruct, ratio)
    hidden, want = NN_GOLDEN[channels, ratio, norm_pix]
    assert _hidden(mask) == hidden
    assert loss.item() == pytest.approx(want, rel=1e-4, abs=0)


def test_default_ratio_and_state_dict_keys_are_unchanged():
    """forward() without a ratio uses the model's own, as before; checkpoints still load (same key names)."""
    vit, nn_mae = _vit(2, 1, mask_ratio=0.75), _nnformer(1, mask_ratio=0.75)
    for model, x, old in ((vit, _input(1, 32, 32), _old_vit_forward), (nn_mae, _input(1, 32, 32, 32), _old_nn_forward)):
        torch.manual_seed(3)
        new_loss, _, new_mask = model(x)
        torch.manual_seed(3)
        old_loss, _, old_mask = old(model, x, 0.75)
        assert torch.equal(new_loss, old_loss) and torch.equal(new_mask, old_mask)
    top = lambda m: [k for k in m.state_dict() if not k.startswith(("encoder.", "decoder_blocks."))]  # noqa: E731
    assert top(vit) == VIT_TOP_KEYS and top(nn_mae) == NN_TOP_KEYS
    assert (len(vit.state_dict()), len(nn_mae.state_dict())) == N_KEYS


VIT_TOP_KEYS = ["mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight",
                "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
NN_TOP_KEYS = ["mask_token", "head.weight", "head.bias"]
N_KEYS = (50, 123)
