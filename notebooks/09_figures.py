# %% [markdown]
# # 09 · Fig. 2 and Fig. 3: what the models see and what they segment
#
# **Fig. 2** shows MAE reconstructions with 75 % of the patches hidden, one row per dataset, using the 75 %
# pre-trainings of notebooks 02 (CXR14) and 08 (BTCV, BraTS). **Fig. 3** overlays segmentations of validation cases:
# ground truth, the UNETR trained from scratch and the UNETR fine-tuned from MAE (seed 0 of notebooks 06 and 07).
# This notebook trains nothing; it only reads checkpoints.

# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
out_dir = ""
results_dir = ""
seeds = [0, 1, 2]
device = "auto"
max_steps = None
overrides = {}

# %%
from selfmae.experiments import eval_classes, reconstruction_examples, segmentation_examples
from selfmae.notebook import NotebookContext
from selfmae.viz import plot_reconstructions, plot_segmentation_overlays

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)
mae_75 = {
    "ChestX-ray14": ("pretrain_cxr14", ctx.runs / "pretrain_cxr14" / "last.pt"),
    "BTCV (CT)": ("pretrain_btcv", ctx.runs / "ablation_btcv" / "mask0.75_ep10000" / "pretrain" / "last.pt"),
    "BraTS (FLAIR)": ("pretrain_brats", ctx.runs / "ablation_brats" / "mask0.75_ep500" / "pretrain" / "last.pt"),
}
missing = [str(path) for _, path in mae_75.values() if not path.exists()]
assert not missing, f"run notebooks 02 and 08 first; missing: {missing}"

# %% [markdown]
# ## Fig. 2: reconstructions at 75 %
# Three things to notice: the anatomy's large-scale layout comes back from a quarter of the patches; fine texture
# does not (the loss rewards the average of what could be there); and the visible patches, which carry no loss,
# are only roughly reproduced — the last column pastes the real visible patches back.

# %%
rows = {}
for name, (experiment, ckpt) in mae_75.items():
    cfg = ctx.config(experiment, {"model.mask_ratio": 0.75})
    rows[name] = reconstruction_examples(cfg, ckpt, mask_ratio=0.75, n=1, seed=0)[0]
fig = plot_reconstructions(rows, columns=("original", "masked", "recon", "pasted"))
ctx.save_figure(fig, "fig2_reconstructions", "cxr14")

# %% [markdown]
# ## Fig. 3: segmentation overlays
# For each validation case we show the axial slice with the most labelled voxels. Look for false positives outside
# the organs and for organs only partly found — the differences the paper points at with arrows.

# %%
for dataset, title in (("btcv", "BTCV"), ("brats", "BraTS")):
    cfg = ctx.config(f"finetune_{dataset}")
    study = ctx.runs / f"finetune_{dataset}"
    ckpts = {"scratch": study / "scratch" / "seed0" / "best.pt", "MAE": study / "mae" / "seed0" / "best.pt"}
    cases = segmentation_examples(cfg, ckpts, n_cases=2)
    names = eval_classes(cfg["data"])[0] if dataset == "btcv" else ("WT (edema)", "TC (core)", "ET (enhancing)")
    fig = plot_segmentation_overlays(cases, n_labels=len(names), label_names=names,
                                     columns=("image", "ground truth", "scratch", "MAE"))
    fig.suptitle(f"{title}: UNETR from scratch vs MAE self pre-trained", y=1.02)
    ctx.save_figure(fig, f"fig3_overlays_{dataset}", dataset)
