# %% [markdown]
# # 00 · Overview: what a masked autoencoder learns, and what these notebooks regenerate
#
# This is the map of the project. You will see what *masking* does to an image, how the notebooks that follow
# regenerate every table and figure of the SelfMedMAE paper (Zhou et al., ISBI 2023) and of the MAE + nnFormer
# follow-up, and where their outputs go. Nothing here trains; it runs in seconds.

# %% tags=["parameters"]
profile = "tiny"
data_dir = ""
out_dir = ""
results_dir = ""
seeds = [0, 1, 2]
device = "auto"
max_steps = None
overrides = {}

# %% [markdown]
# ## Setup
# Every notebook starts the same way: a `NotebookContext` knows where runs, tables and figures go, and stamps every
# output with the profile, the data, the commit and the hardware.

# %%
import torch

from selfmae.notebook import NotebookContext
from selfmae.models.mae import MAE
from selfmae.runner import numbered_notebooks
from selfmae.viz import plot_reconstructions, set_style

ctx = NotebookContext(profile, data_dir, out_dir, results_dir, device=device, max_steps=max_steps)
set_style()
print("runs ->", ctx.runs, "| tables ->", ctx.tables, "| figures ->", ctx.figures)

# %% [markdown]
# ## What is a masked autoencoder?
#
# A Vision Transformer cuts an image into square patches (cubes for a CT or MRI volume) and treats each patch as a
# token. MAE pre-training hides a random fraction of the patches, the **mask ratio**, feeds only the *visible*
# patches to the encoder, and asks a small decoder to paint the hidden ones back. The loss is the squared error on
# the hidden patches only, so the network cannot succeed by copying: it has to learn what anatomy looks like and
# where it usually is. After pre-training the decoder is thrown away and the encoder becomes the starting point of
# a classifier (ChestX-ray14) or of a UNETR segmenter (BTCV, BraTS).
#
# *Self* pre-training means the pre-training images are the task's own training images: no ImageNet, no extra
# data. The paper's finding is that this alone beats ImageNet initialisation on all three tasks.
#
# Below, an untrained tiny MAE masks a synthetic disc image at four ratios. Look at how little is left at 75 %:
# that is the paper's setting for chest X-rays. For 3D volumes the paper found a much lower ratio (12.5 %) works
# best — notebook 08 reproduces that ablation.

# %%
torch.manual_seed(0)
yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
image = ((xx**2 + yy**2) < 0.6).float() * 0.6 + 0.4 * torch.sin(6 * xx) * (yy > 0)
mae = MAE(spatial_dims=2, in_channels=1, img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=4,
          decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4).eval()
rows = {}
with torch.no_grad():
    for ratio in (0.125, 0.5, 0.75, 0.9):
        loss, pred, mask = mae(image[None, None], mask_ratio=ratio)
        shown = mae.reconstruct(image[None, None], pred, mask)
        rows[f"mask {ratio:.0%}"] = {"original": image.numpy(), "masked": shown["masked"][0, 0].numpy(),
                                     "recon": shown["recon"][0, 0].numpy(), "pasted": shown["pasted"][0, 0].numpy()}
        print(f"mask ratio {ratio:.3f}: {int(mask.sum())} of {mask.shape[1]} patches hidden")
fig = plot_reconstructions(rows)
ctx.save_figure(fig, "fig0_masking_demo", "cxr14")

# %% [markdown]
# The reconstruction of an *untrained* model is noise: after pre-training (notebooks 02–04) the same panels show
# plausible anatomy. The table below lists what each notebook regenerates.

# %%
import pandas as pd

outputs = {
    "00_overview": "fig0_masking_demo",
    "01_data": "data_examples_{cxr14,btcv,brats}, data_check table",
    "02_pretrain_cxr14": "MAE pre-training on CXR14, curves",
    "03_pretrain_btcv": "MAE pre-training on BTCV, curves",
    "04_pretrain_brats": "MAE pre-training on BraTS, curves",
    "05_finetune_cxr14": "Table 2 (mAUC)",
    "06_finetune_btcv": "Table 1 (DSC/HD95 per organ)",
    "07_finetune_brats": "Table 3 upper (WT/ET/TC)",
    "08_ablations": "Table 3 lower (mask ratio, pre-training length)",
    "09_figures": "Fig. 2 (reconstructions), Fig. 3 (segmentation overlays)",
    "10_nnformer_mae": "MAE + nnFormer: comparison table, label fractions, convergence",
    "11_explore": "interactive mask-ratio explorer",
    "12_real_data_quickstart": "MAE vs scratch on real PneumoniaMNIST",
    "13_learning_check": "did the default run learn? every headline number beside its floor and a simple reference",
    "14_medmnist3d": "MAE vs scratch and the mask ratio on real AdrenalMNIST3D volumes",
}
pd.DataFrame({"notebook": [p.stem for p in numbered_notebooks()]}).assign(
    writes=lambda d: d["notebook"].map(outputs).fillna(""))
