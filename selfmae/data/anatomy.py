"""Drawing synthetic anatomy with learnable structure: a chest radiograph, an abdominal CT, a brain MRI.

Everything is vectorised numpy on coordinate grids (no per-voxel loops), so the tiny phantom set of all three
datasets is written in seconds.

Texture is smooth (random low-frequency fields) and white noise is low. Why: a masked autoencoder with the
norm-pix loss regresses each patch normalised to zero mean and unit variance, so in a flat patch it must predict
the noise itself, which nothing can; flat regions with noise pin the loss near 1.0 (the score of a flat guess)
whatever the model learned. Real scans are textured at the scale of a patch; the phantoms are too. Each drawer takes a seeded `numpy.random.Generator`; the same generator state
gives the same image. `phantoms.py` writes these arrays in the real datasets' on-disk layouts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage



# ----------------------------------------------------------------------------------------------- primitives
def ellipsoid(coords: Sequence[np.ndarray], centre: Sequence[float], semi: Sequence[float],
              angle: float = 0.0) -> np.ndarray:
    """Normalised radius r (r<1 inside) of an ellipse/ellipsoid, rotated by `angle` (rad) in the first 2 axes."""
    d = [c - c0 for c, c0 in zip(coords, centre)]
    if angle:
        ca, sa = np.cos(angle), np.sin(angle)
        d[0], d[1] = ca * d[0] + sa * d[1], -sa * d[0] + ca * d[1]
    return np.sqrt(sum((di / s) ** 2 for di, s in zip(d, semi)))


def smooth_field(rng: np.random.Generator, coords: Sequence[np.ndarray], scale: float, n_waves: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1]: the mean of `n_waves` random plane waves of wavelength ~`scale`."""
    out = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), np.float32)
    for _ in range(n_waves):
        k = rng.normal(size=len(coords))
        k = (k * 2 * np.pi / (scale * np.linalg.norm(k) * rng.uniform(0.7, 1.4))).astype(np.float32)
        out += np.cos(sum(ki * c for ki, c in zip(k, coords)) + np.float32(rng.uniform(0, 2 * np.pi)))
    return out / n_waves


def grid(shape: Sequence[int], step: Sequence[float], centre: Sequence[float] | None = None) -> list[np.ndarray]:
    """Open (broadcastable) coordinate arrays: axis i runs (index - centre_i) * step_i."""
    centre = [(n - 1) / 2 for n in shape] if centre is None else centre
    out = []
    for i, (n, c, s) in enumerate(zip(shape, centre, step)):
        axis_shape = [1] * len(shape)
        axis_shape[i] = n
        out.append(((np.arange(n, dtype=np.float32) - c) * s).reshape(axis_shape))
    return out


def jitter(rng: np.random.Generator, values: Sequence[float], rel: float) -> list[float]:
    """Each value scaled by an independent factor in [1-rel, 1+rel]."""
    return [v * rng.uniform(1 - rel, 1 + rel) for v in values]


# ----------------------------------------------------------------------------------------------- chest X-ray
def chest_image(rng: np.random.Generator, size: int, labels: np.ndarray, anatomy: dict | None = None) -> np.ndarray:
    """uint8 (size, size) frontal chest radiograph; each of the 14 CXR14 labels set in `labels` draws its own
    pattern at its own place (e.g. Cardiomegaly = wide heart, Effusion = fluid at the right base, Nodule = small
    dots), so a classifier can learn them. `anatomy` (patient-level shape parameters) keeps follow-ups alike.
    """
    a = anatomy or chest_anatomy(rng)
    y, x = grid((size, size), (2 / size, 2 / size))
    y, x = np.broadcast_arrays((y - a["dy"]) / a["scale"], (x - a["dx"]) / a["scale"])
    img = np.zeros((size, size), np.float32)  # collimated background: flat (see the quantum noise below)
    body = ellipsoid((x, y), (0, 0.1), (0.92, 1.15)) < 1
    img[body] = (0.5 + 0.08 * smooth_field(rng, (x, y), 0.8, 3))[body]  # soft-tissue thickness varies smoothly
    lung_semi = (0.27, 0.58 * (1.12 if labels[10] else 1.0))
    lungs = [ellipsoid((x, y), (sx * a["lung_dx"], -0.08), lung_semi) for sx in (-1, 1)]
    in_lung = (lungs[0] < 1) | (lungs[1] < 1)
    img[in_lung] = 0.09 if labels[10] else 0.2
    img += in_lung * 0.05 * smooth_field(rng, (x, y), 0.25)  # vessel markings
    rib_period = 0.17 * (1.25 if labels[10] else 1.0)
    ribs = np.mod(y + 0.45 * (np.abs(x) - 0.1) ** 2 * a["rib_curve"], rib_period) < 0.045
    img += 0.13 * (ribs & (ellipsoid((x, y), (0, -0.1), (0.75, 0.72)) < 1))
    img[np.abs(x) < 0.09] = np.maximum(img[np.abs(x) < 0.09], 0.62)  # spine / mediastinum
    heart_semi = (0.26 * (1.5 if labels[1] else 1.0), 0.2 * (1.15 if labels[1] else 1.0))
    img[ellipsoid((x, y), (0.08, 0.3), heart_semi) < 1] = 0.66
    _draw_findings(rng, img, x, y, labels, lungs, a)
    img *= a["gain"]
    # quantum noise, low and in the body only: histogram equalisation would stretch noise on a flat background
    # over a fifth of the grey levels (see the module docstring for why noise matters to the MAE)
    img += body * rng.normal(0, 0.004, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) ** a["gamma"] * 255).astype(np.uint8)


def chest_anatomy(rng: np.random.Generator) -> dict:
    """Patient-level shape parameters shared by all images of one patient."""
    return {"dx": rng.uniform(-0.05, 0.05), "dy": rng.uniform(-0.05, 0.05), "scale": rng.uniform(0.9, 1.05),
            "lung_dx": rng.uniform(0.35, 0.42), "rib_curve": rng.uniform(0.8, 1.3), "gain": rng.uniform(0.85, 1.1),
            "gamma": rng.uniform(0.85, 1.15)}


def _draw_findings(rng, img, x, y, lab, lungs, a) -> None:
    left, right = lungs[0] < 1, lungs[1] < 1  # image-left / image-right lung
    in_lung = left | right
    if lab[0]:  # Atelectasis: thin horizontal plate, image-left mid-lower zone
        img[left & (np.abs(y - rng.uniform(0.2, 0.3)) < 0.04)] += 0.35
    if lab[2]:  # Effusion: fluid with a meniscus at the image-right base
        img[right & (y > 0.28 - 0.6 * (x - a["lung_dx"]))] = 0.6
    if lab[3]:  # Infiltration: patchy haze over both mid zones
        img += 0.22 * in_lung * (smooth_field(rng, (x, y), 0.25) > 0.1) * (np.abs(y + 0.1) < 0.35)
    if lab[4]:  # Mass: one large round opacity
        cx, cy = rng.choice([-1, 1]) * a["lung_dx"] + rng.uniform(-0.08, 0.08), rng.uniform(-0.4, 0.1)
        img += 0.4 * np.clip(1.5 * (1 - ellipsoid((x, y), (cx, cy), (0.13, 0.13))), 0, 1)
    if lab[5]:  # Nodule: a few small dense dots
        for _ in range(rng.integers(3, 6)):
            cx, cy = rng.choice([-1, 1]) * a["lung_dx"] + rng.uniform(-0.15, 0.15), rng.uniform(-0.5, 0.25)
            img[ellipsoid((x, y), (cx, cy), (0.035, 0.035)) < 1] += 0.45
    if lab[6]:  # Pneumonia: fuzzy opacity, image-left lower lobe
        img += 0.35 * left * np.exp(-ellipsoid((x, y), (-a["lung_dx"], 0.25), (0.14, 0.12)) ** 2)
    if lab[7]:  # Pneumothorax: black apical-lateral crescent without markings, with a pleural line
        r = ellipsoid((x, y), (a["lung_dx"] - 0.04, -0.12), (0.22, 0.5))
        zone = right & (r > 1) & (y < 0.05)
        img[zone] = 0.01
        img[right & (np.abs(r - 1) < 0.05) & (y < 0.05)] += 0.25
    if lab[8]:  # Consolidation: dense homogeneous patch, image-right upper lobe
        img[right & (ellipsoid((x, y), (a["lung_dx"], -0.38), (0.18, 0.15)) < 1)] = 0.62
    if lab[9]:  # Edema: bilateral perihilar "bat wing" haze
        img += 0.28 * in_lung * (np.exp(-ellipsoid((x, y), (-0.2, -0.02), (0.14, 0.22)) ** 2)
                                 + np.exp(-ellipsoid((x, y), (0.2, -0.02), (0.14, 0.22)) ** 2))
    if lab[11]:  # Fibrosis: reticular net in the lower lung periphery
        net = (np.abs(np.sin(45 * x)) < 0.25) | (np.abs(np.sin(45 * y)) < 0.25)
        img += 0.2 * (in_lung & net & (y > 0.05) & (np.abs(x) > a["lung_dx"]))
    if lab[12]:  # Pleural thickening: bright band along both lateral lung borders
        for side, r in zip((-1, 1), lungs):
            img[(np.abs(r - 1) < 0.07) & (side * x > a["lung_dx"])] = 0.7
    if lab[13]:  # Hernia: retrocardiac round gas/fluid bubble below the heart
        r = ellipsoid((x, y), (0.0, 0.52), (0.13, 0.11))
        img[(r < 1) & (y < 0.52)] = 0.08
        img[(r < 1) & (y >= 0.52)] = 0.72


# ----------------------------------------------------------------------------------------------- abdomen CT
# (label id, HU, centre mm (x=patient left, y=anterior, z=superior), semi-axes mm, rotation deg); HU as in a
# portal-venous phase, organs at least ~25 HU apart so that intensity tells them apart in part (position the rest)
ABDOMEN_ORGANS = (
    (6, 95, (-65, 5, 55), (75, 85, 65), 10),     # liver, right lobe
    (6, 95, (5, 40, 70), (50, 30, 30), 0),       # liver, left lobe
    (1, 125, (90, -45, 60), (28, 45, 50), -30),  # spleen
    (2, 170, (-65, -45, 0), (26, 24, 50), 20),   # right kidney (cortex; medulla drawn darker)
    (3, 170, (65, -45, 10), (26, 24, 50), -20),  # left kidney
    (12, 30, (-42, -30, 58), (6, 12, 16), 0),    # right adrenal
    (13, 30, (42, -30, 62), (6, 12, 16), 0),     # left adrenal
    (4, 5, (-52, 40, 15), (20, 20, 40), 30),     # gallbladder (bile)
    (11, 70, (15, -8, 22), (62, 17, 18), -10),   # pancreas
    (7, 15, (55, 30, 50), (45, 35, 45), 20),     # stomach (fluid-filled)
)
# (label id, HU, x, y, radius, z range) for vessels/tubes running along z
ABDOMEN_TUBES = (
    (9, 140, -22, -30, 13, (-120, 200)),  # inferior vena cava
    (8, 220, 15, -38, 13, (-110, 200)),   # aorta (arterial contrast)
    (5, 40, 8, -28, 9, (85, 200)),        # esophagus
)


# Bowel/fat texture wavelength (mm) and the partial-volume blur (voxels): structure wider than a 4-voxel MAE
# patch at 7 mm and soft edges, so that a hidden patch is predictable from its neighbours (at 35 mm and 0.6 voxels
# the tiny BTCV MAE stalled at a masked-patch loss of ~0.9; at 90 mm and 1.5 voxels it reaches ~0.6)
BOWEL_SCALE = 90.0
PARTIAL_VOLUME_SIGMA = 1.5


def abdomen_ct(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float],
               organ_scale: float = 1.0, noise_hu: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int16 HU (X,Y,Z), uint8 labels 0..13 (X,Y,Z), 4x4 affine) of an abdominal CT.

    Stored like many DICOM conversions (x and y axes flipped, LPS), so Orientation-to-RAS has work to do; the
    anatomy is placed in RAS millimetres, so every organ is where it belongs whatever the spacing. Organs get
    random size/position/rotation, a smooth deformation and organ-typical HU plus noise. `organ_scale` widens
    every organ but the liver and every vessel (semi-axes, radii) by that factor, so that coarse voxels still
    see the thin ones (the tiny profile's 7 mm phantoms use 1.25).
    """
    sx, sy, sz = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (shape[0] - 1) / 2, sy * (shape[1] - 1) / 2, -sz * (shape[2] - 1) / 2]
    x, y, z = grid(shape, (-sx, -sy, sz))
    s = rng.uniform(0.88, 1.12)
    x, y, z = (x - rng.uniform(-15, 15)) / s, (y - rng.uniform(-10, 10)) / s, (z - rng.uniform(-20, 20)) / s
    warp = [14 * smooth_field(rng, (x, y, z), 250, 3) for _ in range(3)]
    x, y, z = x + warp[0], y + warp[1], z + warp[2]
    hu = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), -1000, np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    body = ellipsoid((x, y), (0, 0), jitter(rng, (165, 115), 0.08))
    body = np.broadcast_to(body, hu.shape)
    hu[body < 1] = -100  # subcutaneous fat
    inner = body < 0.88
    texture = smooth_field(rng, (x, y, z), BOWEL_SCALE, 6)
    bowel = -22.5 + 67.5 * np.tanh(4 * (texture + 0.1))  # bowel (45) / visceral fat (-90), soft boundaries
    hu[inner] = np.broadcast_to(bowel, hu.shape)[inner]
    for side in (-1, 1):
        hu[np.broadcast_to(ellipsoid((x, y), (side * 45, -85), (30, 22)) < 1, hu.shape)] = 50  # paraspinal muscle
    ribcage = (body > 0.8) & (body < 0.88) & (np.mod(z, 28) < 10) & (z > 20) & (y < 60)
    hu[ribcage] = 650
    lung = (ellipsoid((x, y), (0, -10), (140, 90)) < 1) & (z > 95 + 0.002 * x**2 - 0.2 * x)
    hu[lung] = -850
    vert = ellipsoid((x, y), (0, -62), (20, 18))
    hu[np.broadcast_to(vert < 1, hu.shape)] = 250
    hu[np.broadcast_to((vert > 0.8) & (vert < 1), hu.shape)] = 700
    hu[np.broadcast_to(ellipsoid((x, y), (0, -92), (12, 14)) < 1, hu.shape)] = 500
    outline = [smooth_field(rng, (x, y, z), 60, 3) for _ in range(2)]  # shared, mixed per organ below
    for lid, h, centre, semi, rot in ABDOMEN_ORGANS:
        centre = [c + rng.uniform(-8, 8) for c in centre]
        semi = semi if lid == 6 else [s * organ_scale for s in semi]
        r = ellipsoid((x, y, z), centre, jitter(rng, semi, 0.15), np.deg2rad(rot + rng.uniform(-15, 15)))
        phase = rng.uniform(0, 2 * np.pi)
        r = r + 0.08 * (np.cos(phase) * outline[0] + np.sin(phase) * outline[1])  # irregular outline
        inside = r < 1
        hu[inside], lab[inside] = h + rng.normal(0, 6), lid
        if lid in (2, 3):
            hu[r < 0.55] = 35  # renal medulla
        if lid == 7:
            hu[inside & (z > centre[2] + 15) & (y > centre[1])] = -900  # gastric gas cap
    for lid, h, cx, cy, rad, (z0, z1) in ABDOMEN_TUBES:
        rad = rad * organ_scale
        inside = (ellipsoid((x, y), (cx + rng.uniform(-4, 4), cy), (rad, rad)) < 1) & (z > z0) & (z < z1)
        hu[inside], lab[inside] = h + rng.normal(0, 15), lid
    portal = (ellipsoid((y, z), (-12, 38), (7, 7)) < 1) & (x > -40) & (x < 85)
    hu[portal], lab[portal] = 150, 10
    inside_body = np.broadcast_to(body < 1, hu.shape)
    hu += inside_body * 10 * smooth_field(rng, (x, y, z), 90, 4)  # smooth enhancement / beam-hardening variation
    hu = ndimage.gaussian_filter(hu, PARTIAL_VOLUME_SIGMA) + rng.normal(0, noise_hu, hu.shape)
    return np.clip(hu, -1024, 3071).astype(np.int16), lab, affine


# ----------------------------------------------------------------------------------------------- brain MRI
# intensity per tissue and channel (FLAIR, T1w, t1gd, T2w)
BRAIN_CONTRAST = {
    "wm": (0.55, 0.85, 0.85, 0.40), "gm": (0.70, 0.60, 0.62, 0.60), "csf": (0.10, 0.20, 0.20, 1.00),
    1: (1.00, 0.50, 0.52, 0.90),    # edema: bright on FLAIR and T2
    2: (0.65, 0.35, 0.40, 0.75),    # non-enhancing / necrotic core: dark on T1
    3: (0.80, 0.55, 1.40, 0.60),    # enhancing rim: bright on t1gd
}


def brain_mri(rng: np.random.Generator, shape: Sequence[int], noise: float = 0.01
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float32 (X,Y,Z,4) FLAIR/T1w/t1gd/T2w, uint8 labels (X,Y,Z) 0..3, affine 1 mm) of a skull-stripped brain.

    A tumour (enhancing rim 3 around a non-enhancing core 2, inside oedema 1) of random size and position sits
    in one hemisphere; each tissue has its own contrast per channel, zero outside the brain as in MSD.
    """
    x, y, z = grid(shape, [2 / n for n in shape])
    brain = ellipsoid((x, y, z), (0, 0, -0.05), jitter(rng, (0.78, 0.9, 0.8), 0.08))
    brain = brain + 0.05 * smooth_field(rng, (x, y, z), 0.5, 4)
    tissue = np.full(brain.shape, -1, np.int8)
    keys = ("wm", "gm", "csf", 1, 2, 3)
    tissue[brain < 1] = 1
    tissue[brain < 0.85 + 0.05 * smooth_field(rng, (x, y, z), 0.15, 4)] = 0
    for side in (-1, 1):
        tissue[ellipsoid((x, y, z), (side * 0.1, 0.05, 0.05), jitter(rng, (0.07, 0.3, 0.14), 0.2)) < 1] = 2
    centre = (rng.choice([-1, 1]) * rng.uniform(0.2, 0.4), rng.uniform(-0.35, 0.35), rng.uniform(-0.25, 0.3))
    core = rng.uniform(0.2, 0.3)
    d = ellipsoid((x, y, z), centre, jitter(rng, (core,) * 3, 0.25), rng.uniform(0, np.pi))
    d = d + 0.12 * smooth_field(rng, (x, y, z), 0.3, 3)
    label = np.zeros(brain.shape, np.uint8)
    label[(d < rng.uniform(1.5, 2.0)) & (brain < 0.95)] = 1
    label[d < 1] = 3
    label[d < rng.uniform(0.4, 0.6)] = 2
    tissue[label > 0] = label[label > 0] + 2
    table = np.array([BRAIN_CONTRAST[k] for k in keys], np.float32)
    image = np.where((tissue >= 0)[..., None], table[np.maximum(tissue, 0)], 0).astype(np.float32)
    bias = (1 + 0.12 * smooth_field(rng, (x, y, z), 1.5, 2)) * (1 + 0.08 * smooth_field(rng, (x, y, z), 0.4, 4))
    gain = rng.uniform(200, 1200, 4).astype(np.float32)
    image = image * bias[..., None] * gain + rng.normal(0, noise, image.shape).astype(np.float32) * gain
    image[tissue < 0] = 0
    return np.clip(image, 0, None).astype(np.float32), label, np.eye(4)
