"""crystalloop.vision.learn: learned image estimators (CPU in seconds to minutes, CUDA when present).

- :class:`PixelClassifier` — few-shot ilastik-style random-forest pixel classifier on multi-scale
  filter features, trained from one or two annotated images (full or partial) in seconds;
  :func:`train_segmentation` writes a model folder from annotations in any lab format
  (:func:`load_annotations`: label images, one mask per object, COCO, LabelMe, scribbles).

- :class:`UNetSegmenter` — compact U-Net pixel classifier (seed 002) with median-frequency class
  weights, seed-002 augmentation, tiling, and instance post-processing.
- :class:`CrystalClassifier` — multi-label classifier for the ten seed-001 labels with per-label
  thresholds tuned on validation data.
- :class:`ImpurityClassifier`, :class:`ImpurityDetector` — product vs impurity (seed 000):
  imbalanced binary classification and anomaly detection trained on product only.
- :class:`ImageRegressor` — the seed-004 CNN from images to a scalar property, with
  :func:`leave_one_group_out` cross-validation.
- :mod:`~crystalloop.vision.learn.sequence` — experiment outcomes from image sequences: induction
  time, clear/cloud points, solubility curve and metastable zone width.

Estimators follow scikit-learn (``fit``/``predict``/``predict_proba``/``score``) and save to a
directory as ``model.pt`` (state_dict) + ``config.json``; :func:`load_model` reads any of them.
Weights are never downloaded.
"""

from crystalloop.vision.learn.annotations import (
    ANNOTATION_FORMATS,
    Annotation,
    detect_format,
    load_annotations,
)
from crystalloop.vision.learn.augment import (
    SEED002_AUGMENTATION,
    Augmentation,
    flips_rot180,
    median_frequency_weights,
    predict_tiled,
)
from crystalloop.vision.learn.classify import (
    CrystalClassifier,
    as_label_matrix,
    multilabel_report,
    tune_thresholds,
)
from crystalloop.vision.learn.data import (
    check_image,
    labels_to_classes,
    load_coco,
    load_mask_folder,
    normalize_image,
    read_image,
)
from crystalloop.vision.learn.features import (
    DEFAULT_SIGMAS,
    FEATURE_KINDS,
    feature_names,
    pixel_features,
)
from crystalloop.vision.learn.fewshot import (
    SEGMENTATION_METHODS,
    instance_scores,
    make_segmenter,
    train_segmentation,
)
from crystalloop.vision.learn.impurity import (
    AutoencoderDetector,
    FeatureDetector,
    ImpurityClassifier,
    crop_features,
    impurity_scores,
    precision_at_recall,
)
from crystalloop.vision.learn.instances import INSTANCE_METHODS, probabilities_to_labels
from crystalloop.vision.learn.metrics import (
    instance_f1,
    iou_per_class,
    pixel_accuracy,
    psd_percentile_error,
    segmentation_scores,
)
from crystalloop.vision.learn.pixel import SKOPS_TRUSTED_TYPES, PixelClassifier
from crystalloop.vision.learn.regress import ImageRegressor, leave_one_group_out, preprocess_seed004
from crystalloop.vision.learn.sequence import (
    SolubilityCurve,
    clear_cloud_points,
    detect_events,
    fit_solubility,
    induction_time,
    metastable_zone_width,
    plot_sequence,
    plot_solubility,
    sequence_table,
)
from crystalloop.vision.learn.synth import (
    CRYSTAL_LABELS,
    make_crystal_images,
    make_impurity_set,
    make_regression_set,
    make_segmentation_set,
)
from crystalloop.vision.learn.train import TorchEstimator, load_model, plot_history, resolve_device
from crystalloop.vision.learn.unet import SEED002_CLASSES, UNetSegmenter
from crystalloop.vision.learn.workflows import (
    predict_images,
    read_images,
    train_classifier,
    train_regressor,
    train_segmenter,
)

__all__ = [
    "ANNOTATION_FORMATS",
    "Annotation",
    "detect_format",
    "load_annotations",
    "DEFAULT_SIGMAS",
    "FEATURE_KINDS",
    "feature_names",
    "pixel_features",
    "SEGMENTATION_METHODS",
    "instance_scores",
    "make_segmenter",
    "train_segmentation",
    "INSTANCE_METHODS",
    "probabilities_to_labels",
    "SKOPS_TRUSTED_TYPES",
    "PixelClassifier",
    "Augmentation",
    "SEED002_AUGMENTATION",
    "flips_rot180",
    "median_frequency_weights",
    "predict_tiled",
    "CrystalClassifier",
    "as_label_matrix",
    "multilabel_report",
    "tune_thresholds",
    "check_image",
    "labels_to_classes",
    "load_coco",
    "load_mask_folder",
    "normalize_image",
    "read_image",
    "AutoencoderDetector",
    "FeatureDetector",
    "ImpurityClassifier",
    "crop_features",
    "impurity_scores",
    "precision_at_recall",
    "ImageRegressor",
    "leave_one_group_out",
    "preprocess_seed004",
    "SolubilityCurve",
    "clear_cloud_points",
    "detect_events",
    "fit_solubility",
    "induction_time",
    "metastable_zone_width",
    "plot_sequence",
    "plot_solubility",
    "sequence_table",
    "instance_f1",
    "iou_per_class",
    "pixel_accuracy",
    "psd_percentile_error",
    "segmentation_scores",
    "CRYSTAL_LABELS",
    "make_crystal_images",
    "make_impurity_set",
    "make_regression_set",
    "make_segmentation_set",
    "TorchEstimator",
    "load_model",
    "plot_history",
    "resolve_device",
    "SEED002_CLASSES",
    "UNetSegmenter",
    "predict_images",
    "read_images",
    "train_classifier",
    "train_regressor",
    "train_segmenter",
]
