"""The mask-ratio explorer: hide a fraction of an image's patches, let an MAE fill them in, and look.

Two layers, so tests and notebooks can drive everything without a browser:

    ex = MaskExplorer("sample:pneumoniamnist")      # the trained MAE of notebooks 02-04/12/14 if one has run
    ex.model_description                            # which model: checkpoint, epochs and steps, or "untrained: ..."
    ex.set_mask_ratio(0.25)
    view = ex.update()          # view.images: original / masked / recon / pasted / error (2D arrays)
    view.mse, view.n_hidden, view.n_patches
    fig = ex.plot_error_vs_ratio()                  # masked-patch MSE against the mask ratio, this image

    ui = explorer_widget(runs_dir="runs/tiny")      # ipywidgets controls over one MaskExplorer (JupyterLab)
    ui                                              # last expression of a cell: shows the controls

Images come from the shipped real samples (PneumoniaMNIST, a ChestX-ray14 radiograph, an abdominal CT, an
AdrenalMNIST3D volume), the synthetic phantoms, or a file of the user's (.png/.jpg/.tif, .nii/.nii.gz, .npy,
MedMNIST .npz 2D or 3D, or a folder of them). Each is prepared by its model's dataset pipeline: the registry's
`inspect_transforms`, the preprocessing that validates pre-training (CXR14: histogram equalisation, resize, z-score,
centre crop; CT: RAS, spacing, HU window, foreground crop, centre crop to `data.roi_size`; BraTS: z-score over
non-zero voxels; MedMNIST: z-score, resize, centre crop), so nothing drifts from training. Models are MAE checkpoints found under a runs folder (their
`config.yaml` beside them says how to build them), or "untrained": a tiny MAE built from the profile's config with
fixed weights, to show what a model that has learnt nothing produces. The explorer opens on the trained MAE that
fits the image (`default_checkpoint`: notebook 02's or 12's for 2D images, 03's or 04's for volumes, 14's for
MedMNIST 3D volumes) and on "untrained" only when none has run; it says which (`MaskExplorer.model_description`,
the widget's model line).

The package, by purpose: `sources` (images: the shipped samples, a user's files), `prepare` (an image through its
model's dataset pipeline),
`checkpoints` (finding, describing and building the MAE), `core` (`MaskExplorer`, `ExplorerView`), `render` (PNG
panels, the matplotlib figure) and `widget` (the ipywidgets controls, the only module importing ipywidgets).
The quickstart notebooks' helpers (`medmnist_source`, `medmnist_description`, `quickstart_table`) are not the
explorer's: they live in `selfmae.quickstart`.
"""
from __future__ import annotations

from selfmae.explore.checkpoints import (CHECKPOINT_PATTERNS, PREFERRED_RUNS, UNTRAINED, ModelEntry,
                                         build_explorer_model, checkpoint_dims, default_checkpoint,
                                         discover_checkpoints, preferred_experiments)
from selfmae.explore.core import DEFAULT_RATIOS, PANELS, ExplorerView, MaskExplorer
from selfmae.explore.prepare import model_input_size, prepare_input
from selfmae.explore.render import HIDDEN_TINT, plot_view, render_panels, to_png
from selfmae.explore.sources import (ARRAY_SUFFIXES, IMAGE_SUFFIXES, SAMPLE_DIR, SAMPLES, SOURCES, VOLUME_SUFFIXES,
                                     ExplorerError, LoadedImage, load_image, resolve_source, source_data_label)
from selfmae.explore.widget import AXES, PANEL_TITLES, ExplorerWidget, explorer_widget

__all__ = [
    "ARRAY_SUFFIXES", "AXES", "CHECKPOINT_PATTERNS", "DEFAULT_RATIOS", "HIDDEN_TINT", "IMAGE_SUFFIXES", "PANELS",
    "PANEL_TITLES", "PREFERRED_RUNS", "SAMPLES", "SAMPLE_DIR", "SOURCES", "UNTRAINED", "VOLUME_SUFFIXES",
    "ExplorerError", "ExplorerView", "ExplorerWidget", "LoadedImage", "MaskExplorer", "ModelEntry",
    "build_explorer_model", "checkpoint_dims", "default_checkpoint", "discover_checkpoints", "explorer_widget",
    "load_image", "model_input_size", "plot_view", "preferred_experiments",
    "prepare_input", "render_panels", "resolve_source", "source_data_label", "to_png",
]
