# %% [markdown]
# # 12 · Quick start on real data: MAE self pre-training on PneumoniaMNIST
#
# Every other notebook runs on synthetic phantoms by default, because the paper's datasets are large and need
# registration. This one runs the paper's recipe end to end on **real chest X-rays** in a few minutes on a laptop
# CPU: a balanced subset of PneumoniaMNIST (MedMNIST v2, CC BY 4.0; 2428 training, 270 validation and 468 test
# images of 28 × 28 pixels, label 1 = pneumonia) shipped inside the package in `selfmae/data/samples/medmnist/`.
#
# The question is the paper's: does MAE **self** pre-training — on the very images we then fine-tune on, no extra
# data, no labels — give a better classifier than training the same ViT from scratch? We
#
# 1. pre-train a small ViT as an MAE on the training images (labels unused);
# 2. fine-tune it with a linear head, and fine-tune an identical ViT from random weights, for each seed in `seeds`;
# 3. compare the test AUC (one label, so the "mean AUC" is that label's AUC) as mean ± 95 % confidence interval.
#
# Point `data_dir` at another MedMNIST `.npz` (or a folder holding one) to run the same on it (a folder without
# one is an error, never a silent run on the shipped subset); its runs go to their own folder,
# `runs/<profile>/data-<name>-<hash>/`. Set `num_classes` through `overrides` (e.g. `{"model.num_classes": 14}`
# for ChestMNIST).

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
import time

from selfmae.experiments import finetune_study, run_pretrain, study_histories
from selfmae.models import architecture_name
from selfmae.explore import MaskExplorer, plot_view
from selfmae.notebook import NotebookContext
from selfmae.quickstart import medmnist_description, medmnist_source, quickstart_table
from selfmae.viz import plot_training_curves

started = time.perf_counter()
ctx = NotebookContext(profile, medmnist_source(data_dir), out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)
pre_cfg = ctx.config("pretrain_medmnist")
ft_cfg = ctx.config("finetune_medmnist")
data_name = medmnist_description(ctx.dataset_dir("medmnist"))
print("data:", data_name, "·", ctx.dataset_dir("medmnist"))
print("model:", {k: pre_cfg["model"][k] for k in ("patch_size", "embed_dim", "depth", "num_heads", "mask_ratio")},
      "input", pre_cfg["data"]["crop"], "px")
print("pre-training:", {k: pre_cfg["train"][k] for k in ("epochs", "batch_size", "lr")},
      "· fine-tuning:", {k: ft_cfg["train"][k] for k in ("epochs", "batch_size", "lr", "layer_decay")})

# %% [markdown]
# ## 1 · MAE self pre-training
# The MAE hides 75 % of the patches of each (randomly cropped and flipped) training image and learns to fill them
# in — on the tiny profile 36 patches of 4 × 4 pixels in a 24-pixel crop; only the training split is used and its
# labels are ignored. The run is cached in
# `runs/<profile>/pretrain_medmnist/`: a second run of this notebook skips it.

# %%
pretrain = run_pretrain(pre_cfg, ctx.runs / "pretrain_medmnist")
print(f"pre-training: {len(pretrain.history)} epochs, best validation masked-patch loss {pretrain.best_metric:.4f}")

# %% [markdown]
# What did it learn? A test image with 75 % of its patches hidden, reconstructed by the pre-trained encoder and
# decoder (notebook 11 lets you move the mask ratio yourself).

# %%
view = MaskExplorer(ctx.dataset_dir("medmnist"), checkpoint=pretrain.last_ckpt, profile=profile,
                    runs_dir=ctx.runs).update()
fig = plot_view(view, title="MAE, 75 % hidden")
ctx.save_figure(fig, "quickstart_reconstruction", "medmnist")

# %% [markdown]
# ## 2 · Fine-tuning: scratch vs MAE, several seeds
# Both start from the same ViT architecture and train with the same recipe (layer-wise lr decay 0.75, drop path
# 0.1, cosine schedule, binary cross-entropy); the only difference is the initial weights of the encoder. Each seed
# changes the head's initialisation, the data order and the augmentations. The best epoch on the validation split
# is evaluated once on the test split.

# %%
methods = {"scratch": {}, "mae": {"model.init": "mae", "model.pretrained": str(pretrain.last_ckpt)}}
study_dir = ctx.runs / "finetune_medmnist"
results = finetune_study("finetune_medmnist", profile, methods, seeds, study_dir,
                         overrides=ctx.run_overrides("finetune_medmnist"))

# %% [markdown]
# ## 3 · Result
# Test AUC (%) as mean ± half-width of the 95 % Student-t confidence interval over seeds, and each seed's value.
# With three seeds the interval is wide: read overlapping intervals as "no difference shown", whichever mean is
# higher. Whatever the numbers below say is what this run found — they are not tuned to agree with the paper.
#
# The tiny profile fine-tunes for only a few epochs, so it mostly measures how *fast* each start learns: the curves
# below show the ViT from random weights starting lower (its first-epoch training loss is close to chance, ln 2 ≈
# 0.693) and closing most of the gap over five epochs, while the MAE encoder starts with useful features. Whether scratch catches up with a longer schedule is a question you can
# answer with `overrides={"train.epochs": 20}` (about four times longer). The last row is a simple reference
# computed in the same run on the same splits: a logistic regression on the raw pixels. With one label (pneumonia
# or not) the mean AUC is that label's AUC; chance is 50 %.

# %%
from selfmae.baselines import finetune_reference

reference = finetune_reference(ft_cfg)   # a logistic regression on the pixels, same splits (scikit-learn)
table = quickstart_table(results, metric="mAUC", labels={"scratch": "ViT from scratch",
                                                         "mae": "ViT, MAE self pre-trained"},
                         architecture=architecture_name(ft_cfg["model"]),
                         reference=("logistic regression on pixels (reference, this run)", reference["mAUC"]))
ctx.save_table(table, "quickstart_pneumoniamnist", f"{data_name}: test AUC (%), scratch vs MAE self "
               "pre-training; mean ± 95% CI over seeds", "medmnist")
table

# %%
fig = plot_training_curves(study_histories(study_dir, list(methods)), metric="mAUC",
                           title=f"{data_name.split(':')[0]} fine-tuning: training loss and validation AUC")
ctx.save_figure(fig, "quickstart_curves", "medmnist")
print(f"notebook wall time: {time.perf_counter() - started:.0f} s")

# %% [markdown]
# ## Did it learn?
# The masked-patch loss is in norm-pix units: each hidden patch is normalised to zero mean and unit variance before
# the squared error, so guessing every hidden patch as *flat at its own mean* scores about 1.0 on textured patches
# (the reference below, computed on the same validation images). The learning check (notebook 13) asks for
# 0.6 or less on the default run.

# %%
from selfmae.baselines import pretrain_reference

learned = pretrain_reference(pre_cfg, ctx.runs / "pretrain_medmnist")
ctx.save_results("pretrain_medmnist", learned)
print(f"validation masked-patch loss {learned['val_loss']:.3f} after {learned['steps']} steps; "
      f"flat-patch guess {learned['flat_guess']:.3f}")
