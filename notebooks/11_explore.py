# %% [markdown]
# # 11 · Explore: what an MAE sees when you hide its patches
#
# A masked autoencoder (MAE) cuts an image into square patches (cubes for a CT volume), **hides** a fraction of
# them — the *mask ratio* — and learns to paint the hidden ones back from the visible ones. That is the whole
# pre-training task of the paper: no labels, just "guess what is under the mask". This notebook lets you play with
# it: pick an image, a model and a mask ratio, and look at what comes back. It regenerates no table of the paper;
# it saves one figure, the reconstruction error against the mask ratio for one image.
#
# The explorer needs a running Jupyter kernel to react to its sliders (open this notebook in JupyterLab:
# `make lab`). Run top to bottom without one (papermill, `make reproduce`) and it still draws every figure.

# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
out_dir = ""
results_dir = ""
seeds = [0, 1, 2]
device = "auto"
max_steps = None
overrides = {}
image = "sample:pneumoniamnist"   # sample:pneumoniamnist|cxr14|ct, phantom:cxr14|btcv, or a file path
volume = "sample:ct"              # the 3D example

# %%
from selfmae.explore import (MaskExplorer, UNTRAINED, checkpoint_dims, discover_checkpoints, explorer_widget,
                             plot_view, source_data_label)
from selfmae.notebook import NotebookContext

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)
checkpoints = discover_checkpoints(ctx.runs)
print(f"MAE checkpoints under {ctx.runs}:" if checkpoints else
      f"no MAE checkpoints under {ctx.runs} yet (run notebooks 02-04, 08 or 12); the explorer offers 'untrained'")
for label, path in checkpoints.items():
    print(f"  {label}: {path}")

# %% [markdown]
# ## What is hidden, and what comes back
#
# The five panels, left to right:
#
# 1. **original** — the image as the model receives it (resized and cropped to the model's input size);
# 2. **masked input** — the hidden patches tinted blue. The encoder never sees them: it only receives the visible
#    patches, which is why MAE pre-training is cheap (at 75 % it processes a quarter of the tokens);
# 3. **reconstruction** — the decoder's guess for *every* patch. Only the hidden ones are in the loss, so the
#    visible ones are reproduced only roughly;
# 4. **reconstruction + visible** — the real visible patches pasted back, the picture you would use;
# 5. **|error|** — the absolute difference to the original on the hidden patches. Below the panels: how many patches
#    are hidden, the mean squared error over them (the *masked-patch MSE*, in the model's input units) and, beside
#    it, the same error for a **flat guess**: every hidden patch filled with the mean brightness of the visible
#    patches around it. A model has learned something about this image only where its error is below the flat
#    guess's. (Training minimises a related quantity, the error on each patch's *normalised* pixels: see below.)
#
# Move the **mask ratio** slider: the count of hidden patches follows it (25 % of 36 patches is 9). Change the
# **mask seed** to hide a different random set at the same ratio. For a volume, **slice** and **axis** move through
# the 3D reconstruction (the model runs once on the whole crop, e.g. 16³ voxels for the tiny BTCV MAE; slicing is free). Try the models: *untrained*
# is a network with random weights, and each MAE checkpoint found under `runs/` was pre-trained at the mask ratio
# its name says. The explorer opens on the MAE that notebook 12 (PneumoniaMNIST) or 02 (chest X-rays) pre-trained
# — 03 or 04 for a volume — and on *untrained* only when none has run; the **model** line above the panels (and
# the line printed below) says which: the checkpoint, how many epochs and optimiser steps it was trained, its last
# validation loss.
#
# One detail explains what the untrained model shows. The MAE regresses *normalised* pixels (`norm_pix_loss`, the
# MAE default): for each hidden patch it predicts the pattern, with the patch's own mean and contrast taken out. To
# draw a picture, a hidden patch gets the mean and standard deviation of the *visible* patches around it (nothing of
# the hidden pixels is used), so its brightness is a guess from its surroundings. A model that learnt nothing
# therefore draws a noisy mosaic of squares at the surrounding grey level; a trained one draws edges, ribs and
# organ outlines *inside* the squares. The masked-patch MSE measures how wrong those insides are.

# %%
ui = explorer_widget(image, runs_dir=ctx.runs, profile=profile)
print("the explorer opens on:", ui.core.model_description)
ui

# %% [markdown]
# ## Why hide so much?
#
# For **natural images** the MAE authors found that hiding 75 % works best. Photographs are highly redundant: a
# missing patch of sky, fur or wall can be filled in from its neighbours by interpolation, so a low ratio makes the
# task too easy and the encoder learns little. Hiding most of the image forces it to model *what objects look like*.
#
# For **3D medical volumes** the paper (Zhou et al., ISBI 2023, Table 3 lower part) found the opposite trend: low
# ratios were *not* worse, and **12.5 %** gave the best segmentation after fine-tuning on both BTCV and BraTS. A CT
# volume has far more patches (216 cubes of 16³ in a 96³ crop), the anatomy is fine and variable, and hiding most of
# it leaves too little context to say where an organ boundary lies. Notebook 08 reproduces that ablation.
#
# ### Questions to try
#
# * At which mask ratio does the untrained model's error stop changing? Why does it not depend on the ratio much?
# * With a pre-trained checkpoint, drag the ratio from 5 % to 95 %. Where does the reconstruction of the ribs or the
#   organ outlines fall apart? Is the error curve below flat, linear, or does it bend?
# * Compare two checkpoints pre-trained at 12.5 % and 75 % (notebook 08 writes them for BTCV and BraTS): which one
#   reconstructs better *at its own ratio*, and which one at the other's?
# * Switch to the abdominal CT and move through the slices: are the hidden cubes reconstructed better in the middle
#   of the crop (more visible neighbours) than at its border?
# * Change only the mask seed at a fixed ratio. How much does the masked-patch MSE move? That spread is the noise
#   floor under any comparison of two ratios on one image.

# %% [markdown]
# ## A static record: error against the mask ratio
#
# The same computation as the explorer's button, for the first image and every model that fits it (untrained
# plus the 2D checkpoints found), over the mask seeds in `seeds`. Solid lines are the models' reconstructions,
# dashed lines the flat guess under the same masks (one per model, because each model prepares the image its own
# way); the band is the 95 % Student-t interval over mask seeds, and the grey vertical line marks the ratio the
# explorer started at. A model whose solid line does not sit below its dashed one has learned nothing this
# picture can show.

# %%
explorer = MaskExplorer(image, profile=profile, runs_dir=ctx.runs)
models = [UNTRAINED] + [path for path in checkpoints.values() if checkpoint_dims(path) == explorer.image.spatial_dims]
errors = explorer.error_vs_ratio(seeds=seeds, checkpoints=models)
fig = explorer.plot_error_vs_ratio(errors)
ctx.save_figure(fig, "explore_error_vs_ratio", "medmnist", data=source_data_label(image, profile))
errors.groupby(["model", "mask ratio (%)"])["MSE"].mean().unstack(0).round(4)

# %% [markdown]
# ## One volume at 12.5 % and at 75 %
#
# The paper's best ratio for volumes next to the natural-image default, on the middle axial slice of a real
# abdominal CT (the shipped TotalSegmentator sample), with the 3D MAE of notebook 03 (or 04) when one exists, else
# the untrained one; the line printed says which.

# %%
volume_explorer = MaskExplorer(volume, profile=profile, runs_dir=ctx.runs)   # the trained 3D MAE, if one exists
print("model:", volume_explorer.model_description)
for ratio in (0.125, 0.75):
    volume_explorer.set_mask_ratio(ratio)
    view = volume_explorer.update()
    fig = plot_view(view, title=f"{100 * ratio:g} % hidden\n{volume_explorer.entry.label}")
    ctx.save_figure(fig, f"explore_volume_mask{100 * ratio:g}", "btcv", data=source_data_label(volume, profile))
