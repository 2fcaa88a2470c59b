"""selfmae: MAE self pre-training for medical images (2D/3D ViT, UNETR, nnFormer), notebook-first."""

__version__ = "0.1.0"
