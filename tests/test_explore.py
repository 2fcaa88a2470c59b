"""The mask-ratio explorer, driven headlessly through the same callbacks its widgets call."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from selfmae.config import load_config, save_run_record  # noqa: E402
from selfmae.explore import (  # noqa: E402
    UNTRAINED, ExplorerError, MaskExplorer, discover_checkpoints, explorer_widget, load_image, render_panels,
)
from selfmae.quickstart import medmnist_source, quickstart_table  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder with one 2D MAE checkpoint (untrained weights, engine format, config.yaml beside it)."""
    import torch

    from selfmae.models import build_model
    from selfmae.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("runs")
    cfg = load_config("pretrain_medmnist", "tiny", {"model.mask_ratio": 0.25})
    run = root / "pretrain_medmnist"
    torch.manual_seed(1)
    model = build_model(cfg["model"], cfg["data"])
    save_checkpoint({"model": model.state_dict()}, run / "last.pt")
    save_run_record(cfg, run)
    return root


@pytest.fixture(scope="module")
def ui(runs):
    return explorer_widget("sample:pneumoniamnist", runs_dir=runs)


@pytest.fixture(scope="module")
def ui3(runs):
    return explorer_widget("sample:ct", runs_dir=runs)


def test_hidden_patches_follow_the_slider(ui):
    n = ui.view.n_patches
    assert n == ui.core.n_patches == (24 // 4) ** 2   # tiny pretrain_medmnist: 24 px crop, 4 px patches
    ui.ratio.value = 25
    assert ui.core.mask_ratio == 0.25
    assert ui.view.n_hidden == round(0.25 * n)
    assert f"{round(0.25 * n)} of {n} patches hidden" in ui.status.value
    counts = []
    for value in (5, 50, 75, 95):
        ui.ratio.value = value
        counts.append(ui.view.n_hidden)
        assert abs(ui.view.n_hidden - value / 100 * n) <= 1
        assert ui.view.hidden.mean() == pytest.approx(ui.view.n_hidden / n)   # hidden pixels = hidden patches
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert ui.message.value == ""


def test_images_change_with_ratio_and_seed(ui):
    ui.ratio.value = 30
    before = {k: w.value for k, w in ui.images.items()}
    assert all(v[:8] == b"\x89PNG\r\n\x1a\n" for v in before.values())
    ui.ratio.value = 70
    after_ratio = {k: w.value for k, w in ui.images.items()}
    assert after_ratio["masked"] != before["masked"] and after_ratio["pasted"] != before["pasted"]
    assert after_ratio["original"] == before["original"]
    mse = ui.view.mse
    ui.seed.value = ui.seed.value + 1
    assert ui.images["masked"].value != after_ratio["masked"]
    assert ui.view.mse != mse and np.isfinite(ui.view.mse)


def test_same_ratio_and_seed_give_the_same_mask(ui):
    ui.ratio.value, ui.seed.value = 40, 3
    first = ui.images["masked"].value
    ui.ratio.value = 60
    ui.ratio.value = 40
    assert ui.images["masked"].value == first


def test_error_vs_ratio_button_draws_a_figure(ui):
    ui.plot_button.click()
    assert ui.message.value == ""
    fig = ui.last_figure
    assert fig is not None and fig.axes[0].get_xlabel().startswith("mask ratio")
    assert len(fig.axes[0].lines) >= 1
    df = ui.core.error_vs_ratio(ratios=(0.25, 0.75), seeds=(0, 1))
    assert len(df) == 8 and set(df["mask ratio (%)"]) == {25.0, 75.0} and (df["MSE"] > 0).all()
    assert (df["guess"].value_counts() == 4).all() and set(df["guess"]) == {"MAE", "flat guess"}
    # the reference line is the view's own flat guess under the same mask
    ui.ratio.value, ui.seed.value = 75, 1
    flat = df[(df["guess"] == "flat guess") & (df["mask ratio (%)"] == 75.0) & (df["seed"] == 1)]["MSE"].item()
    assert ui.view.flat_mse == pytest.approx(flat) and f"flat guess {ui.view.flat_mse:.4f}" in ui.view.summary()


def test_discovered_checkpoint_loads_and_is_labelled(ui, runs):
    found = discover_checkpoints(runs)
    assert list(found) == ["pretrain_medmnist · 2D · mask 25 %"]
    assert [v for _, v in ui.checkpoint.options] == [UNTRAINED, str(runs / "pretrain_medmnist" / "last.pt")]
    trained = str(found["pretrain_medmnist · 2D · mask 25 %"])
    assert ui.checkpoint.value == trained                  # it opened on the trained MAE
    assert "pretrain_medmnist" in ui.status.value and "trained MAE" in ui.model_line.value
    trained_png = ui.images["recon"].value
    ui.checkpoint.value = UNTRAINED
    assert ui.message.value == "" and "untrained" in ui.model_line.value
    assert ui.images["recon"].value != trained_png   # other weights, other reconstruction
    ui.checkpoint.value = trained
    assert ui.images["recon"].value == trained_png
    ui.checkpoint.value = UNTRAINED


def test_missing_checkpoint_gives_a_clear_message(ui, tmp_path):
    png = ui.images["masked"].value
    missing = tmp_path / "runs" / "pretrain_x" / "last.pt"
    ui.checkpoint_path.value = str(missing)
    assert "checkpoint not found" in ui.message.value and str(missing) in ui.message.value
    assert "Traceback" not in ui.message.value
    assert ui.core.checkpoint == UNTRAINED and ui.images["masked"].value == png   # the last picture stays
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    (tmp_path / "config.yaml").write_text("data: {spatial_dims: 2}\nmodel: {name: mae}\n")
    ui.checkpoint_path.value = str(broken)
    assert "cannot" in ui.message.value or "broken.pt" in ui.message.value
    ui.ratio.value = 55                      # the widget keeps working afterwards
    assert ui.message.value == "" and ui.view.mask_ratio == 0.55


@pytest.mark.parametrize("name, content", [
    ("scan.png", b"\x89PNG\r\n\x1a\n garbage"),
    ("scan.nii.gz", gzip.compress(b"not a nifti header")),
    ("scan.npz", b"PK\x03\x04 truncated"),
    ("scan.docx", b"whatever"),
])
def test_unreadable_file_gives_a_clear_message(ui, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    png = ui.images["original"].value
    ui.source.value = "a file of mine (path below)"
    ui.path.value = str(bad)
    assert str(bad) in ui.message.value
    assert any(w in ui.message.value for w in ("cannot read", "unsupported"))
    assert "Traceback" not in ui.message.value
    assert ui.images["original"].value == png
    ui.path.value = ""
    ui.source.value = "PneumoniaMNIST test image (real, 2D)"
    assert ui.message.value == ""


def test_missing_file_message():
    with pytest.raises(ExplorerError, match="no such file"):
        load_image("/nonexistent/scan.nii.gz")


def test_volume_slice_and_axis(ui3):
    core = ui3.core
    assert core.image.spatial_dims == 3 and ui3.volume_controls.layout.display == ""
    side = core.x.shape[-1]                      # the tiny 3D MAE's crop (pretrain_btcv tiny: 16^3, 4^3 patches)
    assert core.x.shape[2:] == (side,) * 3 and ui3.view.n_patches == 64
    assert ui3.slice.max == side - 1 and ui3.slice.value == side // 2
    before = ui3.images["original"].value
    ui3.slice.value = side // 4
    assert ui3.view.slice_index == side // 4 and ui3.view.seconds == 0.0   # slicing reuses the forward pass
    assert ui3.images["original"].value != before
    ui3.axis.value = 0
    assert ui3.view.axis == 0 and ui3.slice.value == side // 2
    ui3.ratio.value = 25
    assert ui3.view.n_hidden == 16 and ui3.view.seconds > 0
    # only 2D checkpoints exist: the 3D explorer offers 'untrained' alone
    assert [v for _, v in ui3.checkpoint.options] == [UNTRAINED]
    assert ui3.message.value == ""


def test_2d_checkpoint_on_a_volume_is_refused(runs):
    core = MaskExplorer("sample:ct", profile="tiny", runs_dir=runs)
    with pytest.raises(ExplorerError, match="2D model"):
        core.set_checkpoint(runs / "pretrain_medmnist" / "last.pt")
    assert core.checkpoint == UNTRAINED


def test_png_and_folder_sources(tmp_path):
    core = MaskExplorer("sample:cxr14", runs_dir=tmp_path)   # no checkpoints there: the untrained 2D MAE
    crop = load_config("pretrain_cxr14", "tiny")["data"]["crop"]   # the tiny model's input size
    assert core.image.count == 3 and core.x.shape == (1, 1, crop, crop)
    panels = render_panels(core.update())
    assert set(panels) == {"original", "masked", "recon", "pasted", "error"}


def test_quickstart_helpers(tmp_path):
    results = {"scratch": [{"mAUC": 0.80}, {"mAUC": 0.82}, {"mAUC": 0.84}], "mae": [{"mAUC": 0.9}]}
    table = quickstart_table(results, labels={"scratch": "from scratch"})
    assert list(table["method"]) == ["from scratch", "mae"]
    assert table.loc[0, "mAUC (%)"].startswith("82.00 ± ") and table.loc[1, "mAUC (%)"] == "90.00 (n=1)"
    named = quickstart_table(results, architecture="ViT 4x64, patch 4")
    assert list(named["Architecture"]) == ["ViT 4x64, patch 4"] * 2 and list(table["Architecture"]) == ["–", "–"]
    with_ref = quickstart_table(results, reference=("logistic regression", 0.875))
    assert list(with_ref["method"])[-1] == "logistic regression" and with_ref["mAUC (%)"].iloc[-1] == "87.50"
    assert medmnist_source("").endswith("pneumoniamnist_subset.npz")
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "x.npz").write_bytes(b"")
    assert medmnist_source(str(tmp_path)) == str(tmp_path / "medmnist")


# ----- the explorer opens on the trained MAE of notebooks 02-04/12, and says which ---------------------------------
def _pretrained(runs_dir, experiment, steps, val_losses, profile="tiny"):
    """A pre-training run folder as the engine leaves it: last.pt (weights, steps, per-epoch history) and
    config.yaml; the weights are a freshly built MAE (what is tested is which file is opened and what it says)."""
    import torch

    from selfmae.models import build_model
    from selfmae.train.checkpoint import save_checkpoint

    cfg = load_config(experiment, profile)
    run = runs_dir / experiment
    torch.manual_seed(2)
    model = build_model(cfg["model"], cfg["data"])
    history = [{"epoch": i + 1, "step": steps * (i + 1) // len(val_losses), "val_loss": v}
               for i, v in enumerate(val_losses)]
    save_checkpoint({"model": model.state_dict(), "step": steps, "epoch": len(history), "history": history},
                    run / "last.pt")
    save_run_record(cfg, run)
    return run / "last.pt"


def test_opens_on_the_trained_mae_that_fits_each_image(tmp_path):
    from selfmae.explore import default_checkpoint

    medmnist = _pretrained(tmp_path, "pretrain_medmnist", 380, [0.9, 0.67])
    cxr14 = _pretrained(tmp_path, "pretrain_cxr14", 48, [0.95])
    btcv = _pretrained(tmp_path, "pretrain_btcv", 60, [0.97, 0.5])
    core = MaskExplorer("sample:pneumoniamnist", runs_dir=tmp_path)
    assert core.checkpoint == medmnist and core.entry.trained
    said = core.model_description
    assert said.startswith("trained MAE: ") and str(medmnist) in said
    assert "2 epochs, 380 optimiser steps" in said and "validation masked-patch loss 0.670" in said
    assert "MAE (ViT " in said and "mask 75 %" in said
    core.set_source("sample:cxr14")                           # the default follows the image ...
    assert core.checkpoint == cxr14 and "1 epochs, 48 optimiser steps" in core.model_description
    core.set_source("sample:ct")
    assert core.checkpoint == btcv and "pretrain_btcv" in core.model_description
    core.set_checkpoint(UNTRAINED)                            # ... until a model is chosen
    core.set_source("sample:pneumoniamnist")
    assert core.checkpoint == UNTRAINED and core.model_description.startswith("untrained: random weights")
    assert "run notebooks" not in core.model_description    # trained ones exist: untrained is only a comparison
    (tmp_path / "pretrain_medmnist" / "last.pt").unlink()     # only the CXR14 MAE is left for 2D images
    image = load_image("sample:pneumoniamnist")
    assert default_checkpoint(image, tmp_path) == cxr14


def test_untrained_only_when_nothing_has_run_and_it_says_so(tmp_path):
    ui = explorer_widget("sample:pneumoniamnist", runs_dir=tmp_path)
    assert ui.core.checkpoint == UNTRAINED and not ui.core.entry.trained
    said = ui.core.model_description
    assert said.startswith("untrained: random weights") and "run notebooks 02-04" in said
    assert "untrained" in ui.model_line.value and "run notebooks 02-04" in ui.model_line.value


@pytest.mark.slow
def test_opens_on_a_checkpoint_the_engine_wrote(tmp_path):
    """A real (3-step) pre-training through the engine: the explorer finds it, loads it and counts its steps."""
    from torch.utils.data import Subset

    from selfmae.experiments import build_data, run_pretrain

    cfg = load_config("pretrain_medmnist", "tiny", {"train.max_steps": 3, "train.epochs": 1, "train.val_every": 1,
                                                     "train.device": "cpu", "train.batch_size": 16})
    data = build_data(cfg, check=False)
    small = {"train": Subset(data["train"], range(64)), "val": Subset(data["val"], range(16))}
    result = run_pretrain(cfg, tmp_path / "pretrain_medmnist", datasets=small)
    ui = explorer_widget("sample:pneumoniamnist", runs_dir=tmp_path)
    assert ui.core.checkpoint == result.last_ckpt and ui.core.entry.trained
    assert "1 epochs, 3 optimiser steps" in ui.model_line.value
    assert f"validation masked-patch loss {result.history[-1]['val_loss']:.3f}" in ui.core.model_description


def test_medmnist3d_volume_with_its_trained_mae_and_a_slice_slider(tmp_path):
    """A MedMNIST 3D volume (AdrenalMNIST3D) opens on notebook 14's MAE, prepared as pretrain_medmnist3d trains
    (resized, z-scored), with the slice slider; other volumes keep the CT MAE."""
    medmnist3d = _pretrained(tmp_path, "pretrain_medmnist3d", 120, [0.19, 0.15])
    btcv = _pretrained(tmp_path, "pretrain_btcv", 60, [0.97])
    ui = explorer_widget("sample:pneumoniamnist", runs_dir=tmp_path)
    ui.source.value = "AdrenalMNIST3D test volume (real, 3D)"
    core = ui.core
    assert ui.message.value == "" and core.image.spatial_dims == 3 and core.checkpoint == medmnist3d
    assert "adrenalmnist3d.npz test #0" in core.image.name and core.image.count == 298
    side = load_config("pretrain_medmnist3d", "tiny")["data"]["roi_size"][0]
    assert core.x.shape == (1, 1, side, side, side) and abs(float(core.x.mean())) < 1e-4   # z-scored as in training
    assert ui.volume_controls.layout.display == "" and ui.slice.max == side - 1 and ui.slice.value == side // 2
    assert "pretrain_medmnist3d" in ui.model_line.value and "2 epochs, 120 optimiser steps" in ui.model_line.value
    before = ui.images["original"].value
    ui.slice.value = side // 4
    assert ui.view.slice_index == side // 4 and ui.view.seconds == 0.0 and ui.images["original"].value != before
    assert ui.view.n_patches == core.n_patches == (side // 7) ** 3
    core.set_source("sample:ct")
    assert core.checkpoint == btcv
    untrained = MaskExplorer("sample:adrenalmnist3d", runs_dir=tmp_path / "nothing")
    assert untrained.checkpoint == UNTRAINED and "pretrain_medmnist3d" in untrained.model_description


# ----- no drift: the explorer prepares an image exactly as pre-training validates it (issue #14) -------------------
def _validation_item(experiment, source, tmp_path):
    """(the explorer's source, the data section, the item of the dataset's own reader for the same file)."""
    from selfmae.data.registry import dataset_spec
    from selfmae.explore import SAMPLES, resolve_source

    data = load_config(experiment, "tiny")["data"]
    if source.startswith("phantom:"):   # BraTS: a phantom case as its reader lists it
        from _data_helpers import phantom

        data = dict(data, data_dir=str(phantom(source.split(":")[1], tmp_path)))
        item = dataset_spec(data).read(data, "pretrain")["val"][0]
        return str(item["image"]), data, item
    path = resolve_source(source)
    if data["dataset"] == "medmnist":   # the explorer shows a MedMNIST file's test split
        item = dataset_spec(data).read(dict(data, data_dir=str(path)), "pretrain")["test"][0]
    elif path.is_dir():
        item = {"image": sorted(path.glob("*.png"))[0], "label": np.zeros(14, np.float32)}
    else:
        item = {"image": path}
    return source, data, item


@pytest.mark.parametrize("experiment, source", [
    ("pretrain_cxr14", "sample:cxr14"), ("pretrain_btcv", "sample:ct"), ("pretrain_brats", "phantom:brats"),
    ("pretrain_medmnist", "sample:pneumoniamnist"), ("pretrain_medmnist3d", "sample:adrenalmnist3d"),
])
def test_the_explorer_prepares_an_image_as_its_dataset_validates_it(experiment, source, tmp_path):
    import torch

    from selfmae.data.registry import dataset_spec
    from selfmae.explore import prepare_input

    source, data, item = _validation_item(experiment, source, tmp_path)
    mine = prepare_input(load_image(source), data)
    theirs = torch.as_tensor(dataset_spec(data).transforms(data, "pretrain", train=False)(item)["image"])
    assert mine.shape == (1, *theirs.shape) and torch.equal(mine[0], theirs.float())


# ----- plot_view: the notebook figure tints hidden patches as the widget does and names the model ------------------
@pytest.mark.parametrize("trained", [True, False])
def test_plot_view_tints_hidden_patches_and_names_the_model(runs, trained):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfmae.explore import HIDDEN_TINT
    from selfmae.explore.render import image_range, plot_view, to_rgb

    core = MaskExplorer("sample:pneumoniamnist", checkpoint=None if trained else UNTRAINED, runs_dir=runs)
    view = core.update()
    assert 0 < view.hidden.sum() < view.hidden.size
    fig = plot_view(view)
    try:
        shown = np.asarray(fig.axes[1].images[0].get_array())      # the masked-input panel, as drawn
        plain = to_rgb(view.images["masked"], *image_range(view))   # the masked image without the tint
        assert shown.shape == (*view.hidden.shape, 3)
        assert np.array_equal(shown[~view.hidden], plain[~view.hidden])           # visible patches as they are
        assert (np.abs(shown[view.hidden].astype(int) - plain[view.hidden]).sum(-1) > 0).all()   # hidden: tinted
        blue = shown[view.hidden].astype(float)
        assert np.allclose(blue, 0.35 * plain[view.hidden] + 0.65 * HIDDEN_TINT, atol=1)
        title = fig._suptitle.get_text()
    finally:
        plt.close(fig)
    if trained:
        assert title.startswith("trained MAE: ") and "pretrain_medmnist/last.pt" in title
    else:
        assert title.startswith("untrained MAE: random weights")
    assert view.summary() in title


# ----- runs on the user's own data (runs/<profile>/data-<name>-<hash>/<experiment>/) ----------------------------------
def _pretrained_on_own_data(runs_dir, task_dir):
    import torch

    from selfmae.models import build_model
    from selfmae.train.checkpoint import save_checkpoint

    cfg = load_config("pretrain_decathlon", "tiny", {"data.data_dir": str(task_dir), "data.in_channels": 1})
    run = runs_dir / "data-Task99_MyCT-abc123" / "pretrain_decathlon"
    torch.manual_seed(3)
    model = build_model(cfg["model"], cfg["data"])
    save_checkpoint({"model": model.state_dict(), "step": 40, "epoch": 2,
                     "history": [{"epoch": 1, "val_loss": 0.8}, {"epoch": 2, "val_loss": 0.6}]}, run / "last.pt")
    save_run_record(cfg, run)
    return run / "last.pt"


def test_the_explorer_finds_a_pretraining_on_the_users_own_data(tmp_path):
    from selfmae.data import prepare_synthetic

    runs = tmp_path / "runs"
    own = _pretrained_on_own_data(runs, prepare_synthetic("decathlon", tmp_path / "Task99_MyCT"))
    found = discover_checkpoints(runs)
    assert found == {"data-Task99_MyCT-abc123/pretrain_decathlon · 3D · mask 12.5 %": own}
    core = MaskExplorer("sample:ct", runs_dir=runs)           # no default-data 3D run: the one on own data
    assert core.checkpoint == own and core.entry.trained and "no 3D MAE checkpoint" not in core.model_description
    assert core.update().model == f"trained MAE: {own}"
    btcv = _pretrained(runs, "pretrain_btcv", 60, [0.5])      # a default-data run comes first
    assert list(discover_checkpoints(runs).values()) == [btcv, own]
    assert MaskExplorer("sample:ct", runs_dir=runs).checkpoint == btcv


def test_a_default_whose_task_folder_moved_opens_untrained_and_says_why(tmp_path):
    runs = tmp_path / "runs"
    own = _pretrained_on_own_data(runs, tmp_path / "gone" / "Task99_MyCT")
    core = MaskExplorer("sample:ct", runs_dir=runs)
    assert core.checkpoint == UNTRAINED and not core.entry.trained
    assert "was not opened" in core.model_description and own.parent.name in core.model_description
