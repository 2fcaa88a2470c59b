# %% [markdown]
# # 05 · Table 2: lung-disease classification on ChestX-ray14
#
# Four ways to start a ViT-B/16 classifier with 14 sigmoid outputs, each fine-tuned and scored by the mean AUC over
# the 14 findings on the official test list:
#
# 1. **scratch** — random initialisation, the paper's 100 epochs;
# 2. **scratch, 4× longer** — does more training close the gap? (paper: 400 epochs);
# 3. **ImageNet** — supervised ImageNet ViT-B/16 weights read from a local file (`imagenet_weights`; skipped with
#    a note when absent: this project never downloads anything);
# 4. **MAE** — the encoder self pre-trained in notebook 02.
#
# Each is run for every seed in `seeds` (the 4× row only for the first seed in the tiny profile); the table shows
# mean ± 95 % confidence interval beside the paper's number.
# The runs are independent, so on a multi-core CPU they train side by side, one process per core
# (`selfmae.parallel`; set `SELFMAE_JOBS=1` to run them one after another); on a GPU they take turns.

# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
out_dir = ""
results_dir = ""
seeds = [0, 1, 2]
device = "auto"
max_steps = None
overrides = {}
# a timm-style ViT-B/16 state dict (.pth); "" = skip the ImageNet row
imagenet_weights = ""

# %%
from selfmae.experiments import finetune_study, init_methods, study_histories
from selfmae.models import architecture_name
from selfmae.notebook import NotebookContext
from selfmae.paper_tables import table2_cxr14
from selfmae.viz import plot_training_curves

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)
cfg = ctx.config("finetune_cxr14")
epochs = cfg["train"]["epochs"]
mae_ckpt = ctx.runs / "pretrain_cxr14" / "last.pt"
assert mae_ckpt.exists(), f"{mae_ckpt} is missing: run notebook 02 first"

# %% [markdown]
# ## Fine-tune
# Fine-tuning follows the MAE recipe the paper used: layer-wise learning-rate decay 0.75 (the first blocks, which
# hold the most generic features, move least), drop path 0.1, a cosine schedule, binary cross-entropy on the 14
# logits. The classifier averages the patch tokens of the last block (global average pooling) before its linear head.

# %%
# the 4x run costs as much as the other rows together: the tiny profile runs it for the first seed only (its row
# says n=1), the paper profile for every seed
long_run = {"train.epochs": 4 * epochs, "train.warmup_epochs": 4 * cfg["train"]["warmup_epochs"],
            "seeds": seeds if profile == "paper" else seeds[:1]}
methods = {"scratch": {}, "scratch_long": long_run, **init_methods(mae_ckpt, imagenet_weights)}
study_dir = ctx.runs / "finetune_cxr14"
results = finetune_study("finetune_cxr14", profile, methods, seeds, study_dir,
                         overrides=ctx.run_overrides("finetune_cxr14"))

# %% [markdown]
# ## Table 2
# Rows marked *paper* are the published numbers; rows marked *ours* are this run, with the number of seeds. On the
# tiny profile the data are synthetic phantoms and the model is tiny: compare the *ordering* of the rows, not the
# values.

# The last row is a simple reference computed in this run: a logistic regression per label on the pixels
# (average-pooled to 32 × 32, scikit-learn), trained on the same training images, scored on the same test list.

# %%
from selfmae.baselines import finetune_reference
from selfmae.paper_tables import with_reference

reference = finetune_reference(cfg)
table = table2_cxr14(results, epochs={"scratch": epochs, "scratch_long": 4 * epochs, "imagenet": epochs,
                                      "mae": epochs}, label=f"ours ({profile})",
                     architecture=architecture_name(cfg["model"]))   # what we built: ViT-B/16 only if it is one
table = with_reference(table, "logistic regression on pixels (32 × 32)", {"Pre-training": "none", "Data": "Self",
                                                                           "mAUC": 100 * reference["mAUC"]})
ctx.save_table(table, "table2_cxr14", "Table 2: ChestX-ray14 mean AUC (%), official test list; ours = mean ± 95% CI "
               "over seeds", "cxr14")
table

# %%
fig = plot_training_curves(study_histories(study_dir, list(methods)), metric="mAUC",
                           title="ChestX-ray14 fine-tuning")
ctx.save_figure(fig, "curves_finetune_cxr14", "cxr14")

# %% [markdown]
# The runs and the reference go to the learning check (notebook 13).

# %%
ctx.save_results("table2_cxr14", {"runs": results, "reference": reference})
print(f"logistic regression on pixels: mAUC {reference['mAUC']:.3f}")
