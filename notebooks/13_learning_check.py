# %% [markdown]
# # 13 · Did every model learn? The learning check
#
# A table of numbers means little until you know what a model that learned *nothing* would score. This notebook
# puts every experiment of the run beside two yardsticks:
#
# - a **floor**: the least a working pipeline must reach on the default (tiny, phantom) run. A missed floor is
#   printed as `MISSED`, never hidden: it means something in data, model or training is broken.
# - a **reference computed in this same run** from the same splits with no deep learning at all:
#   - for an MAE, the loss of guessing every hidden patch as *flat at its own mean* (0 after the per-patch
#     normalisation of the norm-pix loss): about 1.0 on textured patches. An MAE that learned anatomy is well below;
#   - for ChestX-ray14, a logistic regression on the pixels (32 × 32, scikit-learn), scored on the same test list;
#   - for BTCV and BraTS, a per-voxel classifier that sees only the voxel's intensity (no position, no context),
#     scored by Dice with the same conventions as the networks.
#
# The references are not trivial: intensity explains bright kidneys and the aorta, a logistic regression finds
# large findings. A network earns its keep by going beyond them, and the floors do not ask that: a floor says the
# pipeline learns at all (a broken one stays at chance), the reference says whether the network was needed. Read
# both columns. In the committed tiny run two kinds of row do not go beyond their reference: the CXR14 ViTs
# (78.6 and 76.3 % mAUC against the logistic regression's 81.7 %: small phantom images suit a linear
# model) and the BraTS UNETRs on WT (the phantoms' tumour regions are separable by intensity alone, so a voxel
# classifier scores 99.6 %). Values are means over the seeds each notebook ran (n = seeds); the floors are those of
# the tiny profile, stated in `selfmae/learning_check.py`.

# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
out_dir = ""
results_dir = ""
device = "auto"
max_steps = None
overrides = {}

# %%
import pandas as pd

from selfmae import learning_check as lc
from selfmae.data import BTCV_ORGANS
from selfmae.notebook import NotebookContext

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps,
                      overrides=overrides)


# %% [markdown]
# ## Collect every experiment
# Pre-training: the masked-patch loss against the flat guess. Fine-tuning: Table 2 (CXR14 mAUC), Table 1 (BTCV DSC:
# the average over the 8 organs and the weakest organ), Table 3 (BraTS DSC of WT, TC and ET = label 3), every grid
# point of the ablation, and nnFormer at 100 % labels with its label-fraction curve. A notebook that has not run
# is named and gives one `NOT RUN` row, which counts as not met.

# %%
rows = lc.collect_rows(ctx.load_results, BTCV_ORGANS)

# %% [markdown]
# ## The table
# `met` is `yes`, `MISSED` or `NOT RUN`; `reference value` is the simple reference of the same experiment (for the
# weakest organ: the reference's DSC on that organ).

# %%
check = lc.table(rows)
ctx.save_table(check, "learning_check", f"Learning check ({profile}): every experiment's value, its floor, and a "
               "simple reference computed in the same run (means over seeds)", "btcv")
missed = lc.missed(rows)
print(f"{len(rows) - len(missed)} of {len(rows)} floors met")
for row in missed:
    detail = (f"{row.what}: {row.metric} = {row.value:.3f}, floor {row.floor}" if row.ran
              else "run its notebook; until then its floors count as not met")
    print(f"{row.status}: {row.experiment} / {detail}")
pd.set_option("display.max_colwidth", 80)
check
