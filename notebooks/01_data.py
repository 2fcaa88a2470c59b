# %% [markdown]
# # 01 · The data: three real formats, one reader each, synthetic phantoms written the same way
#
# The paper uses three public datasets: **ChestX-ray14** (112,120 chest X-rays, 14 findings, multi-label),
# **BTCV** (30 abdominal CTs with 13 organs drawn by radiologists) and **MSD Task01 BrainTumour** (484 brain MRIs with
# four contrasts each and three tumour sub-regions). You probably do not have them on a laptop, so by default this
# project writes *synthetic phantoms* in exactly the same on-disk layouts — PNG folder + CSV + split lists;
# `RawData/Training` NIfTI; Decathlon `dataset.json` + 4D NIfTI — and the same readers then serve both. To use the
# real data, pass `data_dir` (a folder holding `ChestX-ray14/`, `BTCV/`, `Task01_BrainTumour/`); nothing else changes.
#
# This notebook generates (or finds) the data, runs the integrity check that also guards every training run, and
# shows a few preprocessed examples with their labels.

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
import pandas as pd

from selfmae.data import check_data
from selfmae.experiments import build_data, example_gallery, resolve_data_dir
from selfmae.notebook import NotebookContext
from selfmae.provenance import data_label
from selfmae.viz import plot_examples, set_style

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps)
set_style()
configs = {name: ctx.config(f"finetune_{name}") for name in ("cxr14", "btcv", "brats")}

# %% [markdown]
# ## 1. Generate or locate the data, and check it
# `check_data` opens every listed file and reports **every** problem it finds — a missing image, a truncated
# `.nii.gz`, a label id out of range, NaN voxels, an image and a label of different shapes — each with the file
# name. Training calls the same check and refuses to start on a broken dataset.

# %%
rows = []
for name, cfg in configs.items():
    root = resolve_data_dir(cfg)
    problems = check_data(name, root)
    rows.append({"dataset": name, "folder": data_label(root), "problems": len(problems),
                 "first problem": str(problems[0]) if problems else ""})
check_table = pd.DataFrame(rows)
ctx.save_table(check_table, "data_check", "Integrity check of each dataset folder", "cxr14")
check_table

# %% [markdown]
# ## 2. ChestX-ray14: multi-label chest X-rays
# The paper equalises the histogram of every X-ray, resizes it to 256 and crops 224 pixels (random crops and
# horizontal flips for training, the centre for evaluation). The 14 findings are independent yes/no labels; many
# images have none ("No Finding"). In the phantoms each finding is drawn as its own kind of lesion, so a classifier
# can learn them.

# %%
datasets = {name: build_data(cfg) for name, cfg in configs.items()}
g = example_gallery(configs["cxr14"], n=8, datasets=datasets["cxr14"])
fig = plot_examples(g["images"], g["titles"])
ctx.save_figure(fig, "data_examples_cxr14", "cxr14")

# %% [markdown]
# ## 3. BTCV: abdominal CT, 8 organs evaluated
# CT intensities are Hounsfield units: air −1000, fat about −100, soft tissue 20–60, contrast-filled vessels 150+.
# The paper clips to [−175, 250] HU and rescales to [0, 1], resamples to 1.5 × 1.5 × 2 mm and trains on random
# 96³ crops. Following TransUNet, 8 organs are scored (aorta, gallbladder, kidneys, liver, pancreas, spleen,
# stomach) with 18 training and 12 validation cases. Below: the axial slice with the most labelled voxels.

# %%
g = example_gallery(configs["btcv"], n=4, datasets=datasets["btcv"])
fig = plot_examples(g["images"], g["titles"], g["masks"], n_labels=g["n_labels"])
ctx.save_figure(fig, "data_examples_btcv", "btcv")

# %% [markdown]
# ## 4. MSD BraTS: four MRI contrasts, three nested tumour regions
# Each case is one 4D NIfTI with the contrasts FLAIR, T1w, T1-Gd and T2w on the last axis. Labels are 1 edema,
# 2 non-enhancing tumour, 3 enhancing tumour; the scored regions are nested: whole tumour WT = {1, 2, 3}, tumour
# core TC = {2, 3}, enhancing tumour ET = {3}. (The SelfMedMAE code used ET = {2}; notebook 07 reports both.)
# Edema is bright on FLAIR and T2, the enhancing rim on T1-Gd: compare the four panels of one case.

# %%
g = example_gallery(configs["brats"], n=1, datasets=datasets["brats"])
fig = plot_examples(g["images"], g["titles"], g["masks"], n_labels=g["n_labels"])
ctx.save_figure(fig, "data_examples_brats", "brats")

# %% [markdown]
# ## What to remember
# * One reader per format; synthetic and real data go through the same code.
# * Preprocessing is the paper's and lives in `selfmae/data/transforms.py` as MONAI dictionary transforms.
# * Sizes differ between the `tiny` and `paper` profiles; the pipelines do not.

# %%
print({name: {split: len(ds) for split, ds in d.items()} for name, d in datasets.items()})
