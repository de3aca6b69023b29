"""Drawing a particle list as an 8-bit probe image with its ground truth (:func:`render_particles`)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.vision._validate import check_pixel_size
from crystalloop.vision.render.optics import (
    COARSE_BLUR_PX,
    blur_coarse,
    illumination_field,
    noise_from_pool,
    ring_profile,
)
from crystalloop.vision.render.shapes import (
    KINDS,
    SHAPES,
    agglomerate,
    coverage,
    place,
    raster,
    singles_geometry,
)
from crystalloop.vision.render.truth import truth_frame, truth_singles, truth_union

__all__ = ["render_particles"]


def _check_particles(particles: pd.DataFrame) -> dict[str, np.ndarray]:
    """Validated particle columns as plain arrays (fast to iterate)."""
    if not isinstance(particles, pd.DataFrame):
        raise SchemaError(f"particles must be a pandas DataFrame, got {type(particles).__name__}")
    need = ["x_px", "y_px", "length_um", "width_um"]
    missing = [c for c in need if c not in particles.columns]
    if missing:
        raise SchemaError(
            f"particles table is missing column(s) {missing}; expected at least {need} "
            f"(optional: angle_deg, kind, depth, n_primary); got {list(particles.columns)}"
        )
    n = len(particles)
    p: dict[str, np.ndarray] = {}
    for c in need + ["angle_deg", "depth"]:
        if c in particles.columns:
            col = particles[c]
            # numeric columns convert directly (pd.to_numeric costs ~100 µs a call)
            v = (col.to_numpy(float) if col.dtype.kind in "fiub"
                 else pd.to_numeric(col, errors="coerce").to_numpy(float))
            if not np.all(np.isfinite(v)):
                raise SchemaError(f"particles column {c!r} must be finite numbers; got non-finite at rows "
                                  f"{np.flatnonzero(~np.isfinite(v))[:5].tolist()}")
            p[c] = v
    if (p["length_um"] <= 0).any() or (p["width_um"] <= 0).any():
        raise SchemaError("particles columns 'length_um' and 'width_um' must be > 0 µm")
    p.setdefault("angle_deg", np.zeros(n))
    p["depth"] = np.clip(p["depth"], 0.0, 1.0) if "depth" in p else np.zeros(n)
    if "kind" not in particles.columns:
        p["kind"] = np.full(n, "ellipse", dtype=object)
    else:
        kc = particles["kind"]
        p["kind"] = kc.to_numpy() if kc.dtype == object and all(isinstance(v, str) for v in kc.array) \
            else kc.astype(str).to_numpy()
    if "n_primary" not in particles.columns:
        p["n_primary"] = np.full(n, 4)
    elif particles["n_primary"].dtype.kind in "iu":
        p["n_primary"] = particles["n_primary"].to_numpy().astype(int)
    else:
        p["n_primary"] = pd.to_numeric(particles["n_primary"], errors="coerce").fillna(4).astype(int).to_numpy()
    bad = sorted(set(p["kind"].tolist()) - set(KINDS))
    if bad:
        raise ConfigError(f"unknown particle kind(s) {bad}; expected one of {list(KINDS)}")
    return p



def render_particles(
    particles: pd.DataFrame,
    *,
    shape: tuple[int, int] = (960, 1280),
    pixel_size_um: float,
    background: float | None = None,
    illumination: float = 0.25,
    noise_std: float = 3.0,
    blur: bool = True,
    dark_particles: bool = True,
    contrast: float = 0.75,
    focus_sigma_px: float = 0.7,
    max_blur_px: float = 6.0,
    in_focus_depth: float = 0.35,
    return_labels: bool = False,
    overlap: bool = True,
    fast_noise: bool = False,
    seed: int | np.random.Generator | None = None,
):
    """Render a particle list as an 8-bit probe image and return its ground truth.

    Parameters
    ----------
    particles : DataFrame
        One row per particle: ``x_px, y_px`` (centre, column/row in pixels), ``length_um``,
        ``width_um`` (extent along/across the long axis), optional ``angle_deg`` (long axis,
        counter-clockwise from the column axis), ``kind`` (one of :data:`KINDS`, default
        ``ellipse``), ``depth`` (0 in focus … 1 strongly defocused) and ``n_primary``
        (agglomerates, default 4).
    shape : (rows, cols)
        Image shape in pixels.
    pixel_size_um : float
        Size of one pixel in µm (> 0).
    background : float, optional
        Background grey level (default 200 for dark particles, 40 for bright ones).
    illumination : float
        Relative amplitude of the uneven illumination (gradient + vignetting); 0 for flat.
    noise_std : float
        Standard deviation of the additive Gaussian sensor noise in grey levels.
    blur : bool
        Apply the optical blur: Gaussian with ``focus_sigma_px + depth * max_blur_px``.
    dark_particles : bool
        Dark particles on a bright background (transmitted light, default) or the reverse.
    contrast : float
        Opacity of an in-focus particle (0–1).
    in_focus_depth : float
        Particles with ``depth <= in_focus_depth`` are flagged ``in_focus`` in the truth.
    return_labels : bool
        Also return the int32 label image (0 background, ``label`` of the top-most particle).
    overlap : bool
        Compute ``overlap_fraction`` and ``visible_area_um2`` (needs the label image; NaN when
        false). The simulator's camera turns it off: it costs a full-frame label image and a
        count per particle.
    fast_noise : bool
        Take the sensor noise from a shared pool of Gaussian samples (generated once per
        process) at a random offset instead of drawing ``rows × cols`` new samples: 10× cheaper,
        identical per-pixel statistics and independent pixels within a frame, but the noise
        fields of different frames are shifted copies of the same 4-Mpx pool (fine for a
        camera simulator, not for studies that average noise over many frames).
    seed : int or Generator, optional
        Seeds illumination, noise and agglomerate geometry.

    Returns
    -------
    image : ndarray of uint8, shape ``shape``
    truth : DataFrame
        One row per particle (columns :data:`TRUTH_COLUMNS`): the exact descriptors of the drawn
        shape in µm (not clipped by the frame), ``edge`` (touches the frame border), ``in_frame``
        (any part visible), ``in_focus``, ``overlap_fraction`` (share of its area hidden by
        particles drawn later) and ``visible_area_um2``.
    labels : ndarray of int32, only when ``return_labels`` is true.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"x_px": [40.0], "y_px": [30.0], "length_um": [20.0], "width_um": [20.0]})
    >>> img, truth = render_particles(p, shape=(64, 96), pixel_size_um=1.0, seed=0)
    >>> img.shape, img.dtype, round(float(truth.ecd_um[0]), 1)
    ((64, 96), dtype('uint8'), 20.0)
    """
    px = check_pixel_size(pixel_size_um)
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) <= 0:
        raise ConfigError(f"shape must be (rows, cols) with both > 0, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    p = _check_particles(particles)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bg = float(background if background is not None else (200.0 if dark_particles else 40.0))

    n = len(p["x_px"])
    need_labels = bool(return_labels or overlap)
    labels = np.zeros((h, w), np.int32) if need_labels else None
    sig = (focus_sigma_px + p["depth"] * max_blur_px) if blur else np.zeros(n)
    margin = np.where(sig > 0, np.ceil(3 * sig) + 1, 1).astype(int)
    # defocused particles also lose contrast (light spreads over a larger area)
    alpha = contrast / (1.0 + 0.15 * np.maximum(sig - focus_sigma_px, 0.0))
    # background × illumination first; particles then darken (or brighten) only their crops
    img = illumination_field((h, w), illumination, rng, scale=bg)
    peak = 255.0 if bg < 200 else 0.0
    transmission = None if dark_particles else np.ones((h, w), np.float32)
    target = img if dark_particles else transmission
    rows, own_px = [], np.zeros(n)
    singles: list[tuple[int, np.ndarray, float, float]] = []
    crops = []
    kinds, xs, ys, angs = p["kind"].tolist(), p["x_px"].tolist(), p["y_px"].tolist(), p["angle_deg"].tolist()
    lens, wids = (p["length_um"] / px).tolist(), (p["width_um"] / px).tolist()
    # single shapes: placement, boxes and raster vertices for all at once (agglomerates, which
    # draw from rng, stay in the loop in particle order)
    sidx = [i for i in range(n) if kinds[i] != "agglomerate"]
    slot = {i: j for j, i in enumerate(sidx)}
    if sidx:
        ia = np.array(sidx)
        geom = singles_geometry([SHAPES[kinds[i]](lens[i], wids[i]) for i in sidx], p["x_px"][ia],
                                 p["y_px"][ia], p["angle_deg"][ia], margin[ia],
                                 sig[ia] >= COARSE_BLUR_PX)
    for i in range(n):
        kind, x_c, y_c, ang_c = kinds[i], xs[i], ys[i], angs[i]
        g = float(sig[i])
        coarse = g >= COARSE_BLUR_PX
        j = slot.get(i)
        if j is None:  # agglomerate
            polys = [place(q, x_c, y_c, ang_c) for q in agglomerate(lens[i], wids[i], p["n_primary"][i], rng)]
            t = truth_union(polys)
            pts = np.vstack(polys)
            (lx, ly), (hx, hy) = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
            m = int(margin[i])
            # crop with room for the blur; may extend beyond the frame (clipped when pasted)
            x0, y0 = math.floor(lx) - m, math.floor(ly) - m
            x1, y1 = math.ceil(hx) + m + 1, math.ceil(hy) + m + 1
            if coarse:  # even crop sides: the 2× reduction below is then exactly aligned
                x1, y1 = x1 + (x1 - x0) % 2, y1 + (y1 - y0) % 2
        else:
            polys = [geom["poly"][j]]
            t = {}  # filled below, all single shapes at once
            singles.append((i, polys[0], x_c, y_c))
            (lx, ly), (hx, hy) = geom["lo"][j], geom["hi"][j]
            x0, y0, x1, y1 = geom["box"][j]
        in_frame = hx >= -0.5 and hy >= -0.5 and lx <= w - 0.5 and ly <= h - 0.5
        t["in_frame"] = in_frame
        t["edge"] = in_frame and (lx < 0.5 or ly < 0.5 or hx > w - 1.5 or hy > h - 1.5)
        rows.append(t)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if not in_frame or cx1 <= cx0 or cy1 <= cy0:
            crops.append(None)
            continue
        if j is None:
            cov = coverage(polys, x0, y0, y1 - y0, x1 - x0)
        else:
            cov = raster(geom["verts"][j], y1 - y0, x1 - x0, geom["ss"][j])
        inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        if need_labels:
            inside = cov[inner] >= 0.5
            own_px[i] = np.count_nonzero(inside)
            labels[cy0:cy1, cx0:cx1][inside] = i + 1
        if kind in ("droplet", "bubble"):
            cov *= ring_profile(polys[0], x0, y0, cov.shape, kind)
        if coarse:
            cov = blur_coarse(cov, g)
        elif g > 0:
            # kernel truncated at 3σ (the crop's margin; OpenCV's default 4σ costs a third more)
            k = 2 * math.ceil(3 * g) + 1
            cov = cv2.GaussianBlur(cov, (k, k), sigmaX=g, borderType=cv2.BORDER_CONSTANT)
        # transmission of the crop: 1 - alpha × coverage, multiplied into the frame
        tr = cov[inner]
        tr *= -float(alpha[i])
        tr += 1.0
        sub = target[cy0:cy1, cx0:cx1]
        sub *= tr
        crops.append((cx0, cy0, cx1, cy1))

    if not dark_particles:
        # additive light: background + (peak - background) × (1 - transmission)
        transmission -= 1.0
        transmission *= np.float32(bg - peak)
        img += transmission
    if noise_std > 0:
        if fast_noise:
            pool, scale = noise_from_pool(h * w, float(noise_std), rng)
            cv2.scaleAdd(pool.reshape(h, w), scale, img, dst=img)
        else:
            noise = np.empty((h, w), np.float32)
            cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
            cv2.randn(noise, 0.0, float(noise_std))
            img += noise
    cv2.max(img, 0.0, dst=img)
    image = cv2.convertScaleAbs(img)  # rounds to nearest and saturates at 255

    if singles:
        batch = truth_singles([q for _, q, _, _ in singles], np.array([(x, y) for _, _, x, y in singles]))
        for j, (i, _, _, _) in enumerate(singles):
            rows[i].update({key: float(v[j]) for key, v in batch.items()})
    truth = truth_frame(p, rows, labels, own_px, crops, px, in_focus_depth)
    if return_labels:
        return image, truth, labels
    return image, truth


