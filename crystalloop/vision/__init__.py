"""crystalloop.vision: images → particles → descriptors → particle size distributions.

Functional API in the style of scikit-image: data first, options keyword-only, (row, col) order,
physical quantities with explicit units (``pixel_size_um=``).
"""

from crystalloop.vision.render import KINDS, TRUTH_COLUMNS, render_particles, sample_particles

__all__ = ["KINDS", "TRUTH_COLUMNS", "render_particles", "sample_particles"]
