import random

import numpy as np
import torch

from selfmae.repro import run_metadata, seed_everything


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seeded_draws_are_equal_and_seed_recorded():
    rec = seed_everything(123)
    a = _draw()
    assert rec == {"seed": 123, "deterministic": True}
    seed_everything(123)
    assert _draw() == a
    seed_everything(124)
    assert _draw() != a


def test_run_metadata_fields():
    meta = run_metadata()
    assert {"commit", "date", "hardware", "packages"} <= set(meta)
