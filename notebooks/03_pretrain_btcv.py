# %% [markdown]
# # 03 · MAE self pre-training on BTCV (abdominal CT)
#
# The UNETR of notebook 06 uses a ViT-B/16 encoder on 96³ CT crops cut into 16³ patches (tiny: 16³ crops, 4³
# patches). Here that encoder is pre-trained as a masked autoencoder on the 18 BTCV *training* CTs only — 30
# labelled scans in total is a very small dataset, which is exactly where the paper found self pre-training helps
# most. The paper's best BTCV result hides only **12.5 %** of the patches (notebook 08 sweeps the ratio). MAE needs
# no labels: crops are taken at random. Table 1 (notebook 06) starts from this encoder.

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
from selfmae.experiments import load_history, reconstruction_examples, run_pretrain
from selfmae.notebook import NotebookContext
from selfmae.viz import plot_reconstructions, plot_training_curves

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)
cfg = ctx.config("pretrain_btcv")
run_dir = ctx.runs / "pretrain_btcv"
{section: cfg[section] for section in ("model", "train")}

# %% [markdown]
# ## Train
# AdamW with β = (0.9, 0.95), weight decay 0.05, a cosine learning-rate schedule after a linear warm-up, and bf16
# mixed precision where the hardware supports it. The loss is the mean squared error on the *hidden* patches, each
# normalised by its own mean and variance (`norm_pix_loss`), as in the MAE paper. A finished run is not repeated:
# re-running this cell only reloads it.

# %%
result = run_pretrain(cfg, run_dir)
history = load_history(run_dir)
fig = plot_training_curves({"MAE pre-training": history}, metric="val_loss" if "val_loss" in history else None,
                           title="BTCV: MAE pre-training")
ctx.save_figure(fig, "curves_pretrain_btcv", "btcv")

# %% [markdown]
# ## Look at what it reconstructs
# Hidden patches are black in the masked input (set to zero, the bottom of the CT window). The reconstruction is blurry inside the hidden patches — the loss
# rewards the average of plausible answers — and the visible patches, which the loss ignores, are not copied
# faithfully either; pasting them back gives the last panel.

# %%
examples = reconstruction_examples(cfg, result.last_ckpt, mask_ratio=cfg["model"]["mask_ratio"], n=3)
fig = plot_reconstructions({f"val image {i}": ex for i, ex in enumerate(examples)},
                           columns=("original", "masked", "recon", "pasted", "error"))
ctx.save_figure(fig, "recon_pretrain_btcv", "btcv")
print("masked-patch loss on these images:", [round(ex["loss"], 4) for ex in examples])
print("encoder checkpoint for fine-tuning:", result.last_ckpt)

# %% [markdown]
# ## Did it learn?
# The masked-patch loss is in norm-pix units: each hidden patch is normalised to zero mean and unit variance before
# the squared error, so guessing every hidden patch as *flat at its own mean* scores about 1.0 on textured patches
# (the reference below, computed on the same validation images). The learning check (notebook 13) asks for
# 0.6 or less on the default run.

# %%
from selfmae.baselines import pretrain_reference

learned = pretrain_reference(cfg, run_dir)
ctx.save_results("pretrain_btcv", learned)
print(f"validation masked-patch loss {learned['val_loss']:.3f} after {learned['steps']} steps; "
      f"flat-patch guess {learned['flat_guess']:.3f}")
