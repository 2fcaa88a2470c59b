"""The stages as functions: config -> data -> model -> engine -> metrics. The CLI and every notebook call these.

A run folder (default `runs/<profile>/<experiment>/...`) receives the resolved config, the run record (commit,
packages, hardware, seed), `metrics.csv`, checkpoints and, for fine-tuning, `summary.json` with the evaluation
metrics as flat keys (`dice`, `dice/Liver`, `hd95/Liver`, `mAUC`, `auc/Effusion`, ...). Finished runs are
skipped (the engine's `done.json`), so a notebook that is re-run only redraws.

The package, by purpose: `build` (config -> data root, checked datasets, model, engine task), `stages` (train,
fine-tune, evaluate one run; a finished run's summary), `studies` (methods x seeds side by side, the ablation),
`results` (metrics.csv read back, training curves, last-epoch scores) and `figures` (the arrays Fig. 2 and 3 and the
data gallery draw).
"""
from __future__ import annotations

from selfmae.data.registry import MEDMNIST3D_SAMPLE, MEDMNIST_SAMPLE
from selfmae.experiments.build import (SYNTHETIC_ROOT, build_data, build_model_for, eval_classes, label_subset,
                                       load_trained, make_task, medmnist_labels, medmnist_sample, num_outputs, require_nonempty,
                                       resolve_data_dir, sliding_window_settings)
from selfmae.experiments.figures import example_gallery, reconstruction_examples, segmentation_examples
from selfmae.experiments.results import last_epoch_scores, load_history, study_histories
from selfmae.experiments.stages import (default_run_dir, eval_split, evaluation_dir, run_evaluate, run_finetune,
                                        run_pretrain, run_training, stored_summary, summary)
from selfmae.experiments.studies import (ablation_epochs, ablation_study, finetune_many, finetune_study, init_methods,
                                         label_fraction_overrides)

__all__ = [
    "MEDMNIST3D_SAMPLE", "MEDMNIST_SAMPLE", "SYNTHETIC_ROOT", "ablation_epochs", "ablation_study", "build_data",
    "build_model_for", "default_run_dir", "eval_classes", "eval_split", "example_gallery", "finetune_many",
    "finetune_study", "init_methods", "label_fraction_overrides", "label_subset", "last_epoch_scores", "load_history",
    "load_trained", "make_task", "medmnist_labels", "medmnist_sample", "num_outputs", "reconstruction_examples", "require_nonempty",
    "resolve_data_dir", "evaluation_dir", "run_evaluate", "run_finetune", "run_pretrain", "run_training",
    "segmentation_examples",
    "sliding_window_settings", "stored_summary", "study_histories", "summary",
]
