"""Synthetic in-situ probe images with exact ground truth.

:func:`sample_particles` draws the particle list of one frame from a number distribution (the
virtual crystallizer's camera uses it); :func:`render_particles` draws it as an 8-bit probe image —
ellipses, needles, rods, platelets, blocks, agglomerate clusters, droplets and bubbles with their
true sizes, defocus blur growing with depth, uneven illumination and sensor noise — and returns a
ground-truth table with every descriptor the measurement code reports (same column names, in µm).

Geometry is exact: each particle is a polygon (curved shapes with enough vertices), its true
descriptors come from that polygon (agglomerates: from a supersampled raster of the union), and
its coverage is rasterised with 4× supersampling per particle so the rendered area matches.

Modules: :mod:`.shapes` (outlines and rasterisation), :mod:`.truth` (ground-truth descriptors),
:mod:`.optics` (illumination, blur, noise), :mod:`.draw` (:func:`render_particles`) and
:mod:`.sample` (:func:`sample_particles`).
"""

from crystalloop.vision.render.draw import render_particles
from crystalloop.vision.render.sample import sample_particles
from crystalloop.vision.render.shapes import KINDS
from crystalloop.vision.render.truth import TRUTH_COLUMNS

__all__ = ["render_particles", "sample_particles", "KINDS", "TRUTH_COLUMNS"]
