"""How the explorer prepares an image for a model: the model's dataset's own evaluation preprocessing (the registry's
`inspect_transforms`), so what the explorer shows is what the MAE was validated on, with no preprocessing of its
own. An image in another form than the dataset reads (a MedMNIST image for the CXR14 MAE, a .npy volume for the CT
MAE) is first handed over in that form: a temporary 8-bit PNG or NIfTI file, or a [0, 1] array."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from selfmae.explore.sources import ExplorerError, LoadedImage, suffix


def model_input_size(data_cfg: Mapping) -> list[int]:
    """The network's input size (`selfmae.data.registry.input_size`)."""
    from selfmae.data.registry import input_size

    return list(input_size(data_cfg))


def prepare_input(image: LoadedImage, data_cfg: Mapping) -> torch.Tensor:
    """(1, C, *model input size) float32: `image` through the registry's `inspect_transforms` of the model's data
    section; then a 1-channel image for a multi-channel model is repeated over its channels, and a multi-channel
    image for a model with other channels gives its first channel.

    Raises ExplorerError naming the image when the dataset's preprocessing cannot read it or gives another size."""
    from selfmae.data.registry import spec_of

    spec, size = spec_of(data_cfg), model_input_size(data_cfg)
    with tempfile.TemporaryDirectory(prefix="selfmae-explore-") as tmp:
        try:
            x = spec.inspect_transforms(data_cfg)({"image": _as_read(image, spec.image_files, Path(tmp))})["image"]
        except Exception as err:   # the dataset's own reader or preprocessing refused it: say which image and why
            raise ExplorerError(f"{image.name}: cannot prepare it as the model's {spec.name or 'data'} pipeline "
                                f"does ({type(err).__name__}: {err})") from None
    x = (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x))[None].float()  # MetaTensor is slow
    if list(x.shape[2:]) != size:
        raise ExplorerError(f"{image.name}: the {spec.name} preprocessing gives {tuple(x.shape[2:])}, but the model "
                            f"takes {tuple(size)}")
    channels = spec.in_channels(data_cfg)
    if x.shape[1] != channels:   # a 1-channel image into a 4-channel model: repeat; otherwise the first channel
        x = x[:, :1].repeat(1, channels, *([1] * len(size)))
    return x.contiguous()


def _as_read(image: LoadedImage, files: tuple[str, ...], tmp: Path) -> Path | np.ndarray:
    """The image as the dataset's reader gives it: its own file when the dataset reads that kind of file, else a
    file of the first kind in `files` written under `tmp`, or (files empty: MedMNIST) a float (C, *spatial) array
    in [0, 1]."""
    if image.path is not None and suffix(image.path) in files:
        return image.path
    unit = _unit_range(image)
    if not files:
        return unit
    if files[0] == ".png":
        from PIL import Image

        grey = np.round(unit * 255).astype(np.uint8)
        path = tmp / "image.png"
        Image.fromarray(np.moveaxis(grey, 0, -1) if grey.shape[0] == 3 else grey[0]).save(path)
        return path
    import nibabel as nib

    path = tmp / "image.nii.gz"
    array = image.array[0] if image.array.shape[0] == 1 else np.moveaxis(image.array, 0, -1)
    nib.save(nib.Nifti1Image(array, np.diag([*(image.spacing or (1.0, 1.0, 1.0)), 1.0])), str(path))
    return path


def _unit_range(image: LoadedImage) -> np.ndarray:
    """float32 (C, *spatial) in [0, 1]: 8-bit images / 255 (as MedMNIST's reader), anything else min to max."""
    a = image.array.astype(np.float32)
    if image.uint8:
        return a / np.float32(255.0)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / max(hi - lo, 1e-6)
