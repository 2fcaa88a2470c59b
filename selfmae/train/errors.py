"""Errors the engine raises for bad situations; each message names the file, folder or setting at fault."""
from __future__ import annotations


class TrainConfigError(ValueError):
    """A train_cfg setting is unknown, invalid, impossible on this machine, or incompatible with a stored run."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model (names the file, the key and both shapes)."""


class OutputDirError(RuntimeError):
    """The output folder cannot be written, or holds a run that would be overwritten."""
