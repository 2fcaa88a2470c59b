"""Evaluation: the papers' metrics (mean AUC, Dice, HD95 in mm) and sliding-window segmentation inference."""
from .inference import (SegmentationResult, evaluate_segmentation, postprocess, sliding_window_predict,
                        target_onehot)
from .metrics import dice_hd95, mean_auc, summarize_segmentation

__all__ = ["mean_auc", "dice_hd95", "summarize_segmentation", "sliding_window_predict", "postprocess",
           "target_onehot", "evaluate_segmentation", "SegmentationResult"]
