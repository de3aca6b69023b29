"""crystalloop.vision: images → particles → descriptors → particle size distributions.

Functional API in the style of scikit-image: data first, options keyword-only, (row, col) order,
physical quantities with explicit units (``pixel_size_um=``). The learned models live in
``crystalloop.vision.learn`` and reuse :func:`mask_to_labels` and :func:`measure_particles`.
"""

from crystalloop.vision.calibrate import CalibrationResult, calibrate, read_reference
from crystalloop.vision.io import expand_sources, iter_images, read_image, read_stack
from crystalloop.vision.labelio import read_labels, write_labels
from crystalloop.vision.measure import (
    PARTICLE_COLUMNS,
    empty_particle_table,
    focus_map,
    measure_particles,
)
from crystalloop.vision.metrics import InstanceMatch, match_instances
from crystalloop.vision.pipeline import (
    BatchResult,
    ImageResult,
    PipelineSettings,
    analyze_image,
    analyze_images,
)
from crystalloop.vision.plots import STATUS_COLORS, overlay, plot_psd, save_overlay
from crystalloop.vision.preprocess import (
    background_subtractor,
    clahe,
    equalize_histogram,
    estimate_background,
    flat_field,
    foreground_masks,
    subtract_background,
    to_uint8,
)
from crystalloop.vision.psd import (
    chord_length_distribution,
    chord_lengths,
    compare_psd,
    fit_lognormal,
    lognormal_q3,
    mean_size,
    percentile,
    pool_particles,
    psd_summary,
    psd_table,
    size_classes,
)
from crystalloop.vision.render import KINDS, TRUTH_COLUMNS, render_particles, sample_particles
from crystalloop.vision.report import measure_label_images, measure_psd, write_tables
from crystalloop.vision.segment import (
    clear_border,
    detect_polarity,
    fill_holes,
    mask_to_labels,
    remove_small_objects,
    threshold,
    threshold_value,
    watershed_split,
)
from crystalloop.vision.segmenters import Segmenter, load_segmenter, segment_labels
from crystalloop.vision.skeleton import skeleton_length, split_elongated
from crystalloop.vision.tiling import TiledResult, analyze_tiled

__all__ = [
    "KINDS", "TRUTH_COLUMNS", "PARTICLE_COLUMNS",
    "render_particles", "sample_particles",
    "read_image", "read_stack", "iter_images", "expand_sources",
    "estimate_background", "subtract_background", "flat_field", "equalize_histogram", "clahe", "to_uint8",
    "background_subtractor", "foreground_masks",
    "threshold", "threshold_value", "detect_polarity", "fill_holes", "remove_small_objects", "clear_border",
    "watershed_split", "mask_to_labels",
    "measure_particles", "focus_map", "empty_particle_table",
    "psd_table", "size_classes", "percentile", "mean_size", "fit_lognormal", "lognormal_q3", "psd_summary",
    "compare_psd", "chord_lengths", "chord_length_distribution", "pool_particles",
    "PipelineSettings", "ImageResult", "BatchResult", "analyze_image", "analyze_images",
    "measure_psd", "write_tables", "calibrate", "CalibrationResult", "read_reference",
    "overlay", "save_overlay", "plot_psd", "STATUS_COLORS", "match_instances", "InstanceMatch",
    "Segmenter", "load_segmenter", "segment_labels",
    "skeleton_length", "split_elongated", "analyze_tiled", "TiledResult", "read_labels", "write_labels",
    "measure_label_images",
]
