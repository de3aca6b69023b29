"""Labelled synthetic training sets composed from :func:`crystalloop.vision.render.render_particles`.

So that every learned model can be trained and tested without external data:

- :func:`make_segmentation_set` — probe images with pixel classes: binary, background/interior/
  boundary, or the seed-002 three classes (dark background outside the illuminated field of view,
  light background, crystal);
- :func:`make_crystal_images` — the ten seed-001 multi-label classes (:data:`CRYSTAL_LABELS`);
- :func:`make_impurity_set` — product (elongated, cephalexin-like) vs impurity (compact plates,
  phenylglycine-like) single-particle crops, seed 000;
- :func:`make_regression_set` — porous-structure images whose mean pore size is the target,
  with a strong illumination gradient the seed-004 preprocessing must remove.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.vision.learn.data import labels_to_classes
from crystalloop.vision.render import render_particles

__all__ = [
    "CRYSTAL_LABELS",
    "make_segmentation_set",
    "make_crystal_images",
    "make_impurity_set",
    "make_regression_set",
]

#: The ten seed-001 labels, in the order of the seed's table. An *empty* image is one with all
#: ten labels off (``object_present`` = 0).
CRYSTAL_LABELS = (
    "object_present", "platelet", "block", "needle", "elongated",
    "agglomerate", "droplet", "bubble", "ufo", "too_concentrated",
)

# label -> (renderer kind, ECD range µm, aspect-ratio range, depth range)
_KIND_SPECS = {
    "platelet": ("platelet", (22, 50), (1.0, 1.4), (0.0, 0.25)),
    "block": ("block", (22, 50), (1.0, 1.5), (0.0, 0.25)),
    "needle": ("needle", (14, 30), (7.0, 12.0), (0.0, 0.25)),
    "elongated": ("rod", (18, 36), (2.5, 4.5), (0.0, 0.25)),
    "agglomerate": ("agglomerate", (40, 70), (1.5, 2.5), (0.0, 0.25)),
    "droplet": ("droplet", (18, 45), (1.0, 1.05), (0.0, 0.2)),
    "bubble": ("bubble", (25, 60), (1.0, 1.05), (0.0, 0.2)),
    "ufo": ("ellipse", (25, 60), (1.0, 2.5), (0.9, 1.0)),  # strongly defocused, unidentifiable blobs
}


def _particle_rows(label: str, n: int, shape, pixel_size_um: float, rng: np.random.Generator) -> dict:
    kind, (e0, e1), (a0, a1), (d0, d1) = _KIND_SPECS[label]
    ecd = rng.uniform(e0, e1, n)
    ar = rng.uniform(a0, a1, n)
    length = ecd * np.sqrt(ar)  # keeps the area roughly that of a circle of diameter ecd
    h, w = shape
    margin = 0.1 * min(h, w)
    return {
        "x_px": rng.uniform(margin, w - margin, n), "y_px": rng.uniform(margin, h - margin, n),
        "length_um": length, "width_um": length / ar, "angle_deg": rng.uniform(0, 180, n),
        "kind": np.full(n, kind, dtype=object), "depth": rng.uniform(d0, d1, n), "n_primary": rng.integers(3, 7, n),
    }


def _frame(parts: list[dict]) -> pd.DataFrame:
    keys = ("x_px", "y_px", "length_um", "width_um", "angle_deg", "kind", "depth", "n_primary")
    if not parts:
        return pd.DataFrame({k: np.empty(0, dtype=object if k == "kind" else float) for k in keys})
    return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in keys})


def make_crystal_images(
    n_images: int,
    *,
    shape: tuple[int, int] = (128, 128),
    pixel_size_um: float = 2.0,
    p_empty: float = 0.1,
    p_too_concentrated: float = 0.1,
    max_kinds: int = 2,
    seed: int | None = 0,
):
    """Images with the ten seed-001 labels.

    Each image is empty (probability ``p_empty``), too concentrated (``p_too_concentrated``:
    100–200 mixed particles filling the frame, labelled ``object_present`` + ``too_concentrated``
    only, as an annotator cannot tell the kinds apart), or holds 1–``max_kinds`` kinds among
    platelet, block, needle, elongated, agglomerate, droplet, bubble and ufo, 1–5 particles each.

    Returns
    -------
    images : ndarray uint8, shape (n_images, rows, cols)
    labels : DataFrame of 0/1 int, columns :data:`CRYSTAL_LABELS`
    """
    if n_images < 1:
        raise ConfigError(f"n_images={n_images}; expected at least 1")
    if not 0 <= p_empty + p_too_concentrated <= 1:
        raise ConfigError("p_empty + p_too_concentrated must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    kinds = list(_KIND_SPECS)
    images = np.zeros((n_images, *shape), np.uint8)
    y = np.zeros((n_images, len(CRYSTAL_LABELS)), np.int64)
    col = {k: i for i, k in enumerate(CRYSTAL_LABELS)}
    for i in range(n_images):
        u = rng.random()
        bg = rng.uniform(170, 225)
        if u < p_empty:
            parts = _frame([])
        elif u < p_empty + p_too_concentrated:
            # enough particles to cover the frame 1.5-3 times (scales with the frame area)
            frame_um2 = shape[0] * shape[1] * pixel_size_um**2
            n = max(int(rng.uniform(1.5, 3.0) * frame_um2 / (np.pi / 4 * 35.0**2)), 10)
            counts = rng.multinomial(n, np.full(6, 1 / 6))
            parts = _frame([_particle_rows(k, int(c), shape, pixel_size_um, rng) for k, c in zip(kinds[:6], counts, strict=True) if c])
            parts["x_px"] = rng.uniform(0, shape[1], len(parts))
            parts["y_px"] = rng.uniform(0, shape[0], len(parts))
            y[i, col["object_present"]] = y[i, col["too_concentrated"]] = 1
        else:
            chosen = rng.choice(kinds, size=int(rng.integers(1, max_kinds + 1)), replace=False)
            parts = _frame([_particle_rows(k, int(rng.integers(1, 6)), shape, pixel_size_um, rng) for k in chosen])
            y[i, col["object_present"]] = 1
            for k in chosen:
                y[i, col[k]] = 1
        img, _ = render_particles(parts, shape=shape, pixel_size_um=pixel_size_um, background=bg,
                                  illumination=rng.uniform(0.0, 0.3), noise_std=rng.uniform(1.0, 4.0), seed=rng)
        images[i] = img
    return images, pd.DataFrame(y, columns=list(CRYSTAL_LABELS))


def make_segmentation_set(
    n_images: int,
    *,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 2.0,
    classes: str = "binary",
    n_particles: tuple[int, int] = (10, 30),
    kinds: dict[str, float] | None = None,
    seed: int | None = 0,
):
    """Probe images with pixel-class masks and instance labels.

    Parameters
    ----------
    classes : {"binary", "boundary", "seed002"}
        ``binary``: background 0 / particle 1. ``boundary``: background / interior / boundary
        (:func:`labels_to_classes`). ``seed002``: 0 dark background (outside a circular
        illuminated field of view that covers part of the frame), 1 light background, 2 crystal.

    Returns
    -------
    images : list of ndarray uint8
    masks : list of ndarray uint8 (class maps)
    labels : list of ndarray int32 (instance labels of the in-focus, visible particles)
    truths : list of DataFrame (renderer ground truth)
    """
    if classes not in ("binary", "boundary", "seed002"):
        raise ConfigError(f"classes={classes!r}; expected 'binary', 'boundary' or 'seed002'")
    rng = np.random.default_rng(seed)
    kinds = kinds or {"ellipse": 0.4, "rod": 0.2, "block": 0.2, "platelet": 0.2}
    names, fr = list(kinds), np.array(list(kinds.values()), float)
    h, w = shape
    images, masks, labels, truths = [], [], [], []
    for _ in range(n_images):
        n = int(rng.integers(n_particles[0], n_particles[1] + 1))
        ecd = np.exp(rng.normal(np.log(30.0), 0.35, n))
        ar = rng.uniform(1.0, 3.0, n)
        length = ecd * np.sqrt(ar)
        parts = pd.DataFrame({
            "x_px": rng.uniform(0, w, n), "y_px": rng.uniform(0, h, n), "length_um": length,
            "width_um": length / ar, "angle_deg": rng.uniform(0, 180, n),
            "kind": np.array(names)[rng.choice(len(names), n, p=fr / fr.sum())],
            "depth": np.where(rng.random(n) < 0.85, rng.uniform(0, 0.3, n), rng.uniform(0.6, 1.0, n)),
        })
        img, truth, lab = render_particles(parts, shape=shape, pixel_size_um=pixel_size_um, return_labels=True,
                                           illumination=rng.uniform(0.0, 0.3), noise_std=rng.uniform(1, 4), seed=rng)
        # only in-focus particles are ground truth objects (defocused ones are not sized)
        focus = truth.loc[truth["in_focus"], "label"].to_numpy()
        lab = np.where(np.isin(lab, focus), lab, 0).astype(np.int32)
        if classes == "seed002":
            rr, cc = np.mgrid[0:h, 0:w]
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            rad = rng.uniform(0.45, 0.65) * min(h, w)
            inside = (rr - cy) ** 2 + (cc - cx) ** 2 <= rad**2
            dark = rng.uniform(15, 40) + rng.normal(0, 2, (h, w))
            img = np.where(inside, img, np.clip(dark, 0, 255)).astype(np.uint8)
            mask = np.where(inside, np.where(lab > 0, 2, 1), 0).astype(np.uint8)
            lab = np.where(inside, lab, 0).astype(np.int32)
        else:
            mask = labels_to_classes(lab, "binary" if classes == "binary" else "boundary")
        images.append(img)
        masks.append(mask)
        labels.append(lab)
        truths.append(truth)
    return images, masks, labels, truths


def make_impurity_set(
    n_product: int,
    n_impurity: int,
    *,
    size: int = 64,
    pixel_size_um: float = 1.5,
    seed: int | None = 0,
):
    """Single-particle crops: product (label 0) vs impurity (label 1).

    Product crystals are elongated rods/needles (aspect ratio 3–7, like cephalexin monohydrate);
    impurity crystals are compact platelets/blocks (aspect ratio 1–1.6, like phenylglycine) of
    overlapping size. Crops may contain a partly visible neighbouring product crystal.

    Returns
    -------
    images : ndarray uint8, shape (n, size, size)
    y : ndarray int, shape (n,)
    """
    if n_product < 0 or n_impurity < 0 or n_product + n_impurity == 0:
        raise ConfigError(f"need n_product, n_impurity ≥ 0 with a positive sum, got {n_product}, {n_impurity}")
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_product, int), np.ones(n_impurity, int)]
    rng.shuffle(y)
    images = np.zeros((len(y), size, size), np.uint8)
    for i, t in enumerate(y):
        ecd = rng.uniform(18, 34)
        if t == 0:
            ar = rng.uniform(3.0, 7.0)
            kind = "rod" if rng.random() < 0.6 else "needle"
        else:
            ar = rng.uniform(1.0, 1.6)
            kind = "platelet" if rng.random() < 0.5 else "block"
        length = ecd * np.sqrt(ar)
        rows = [{"x_px": size / 2 + rng.normal(0, 2), "y_px": size / 2 + rng.normal(0, 2), "length_um": length,
                 "width_um": length / ar, "angle_deg": rng.uniform(0, 180), "kind": kind, "depth": rng.uniform(0, 0.3)}]
        if rng.random() < 0.3:  # neighbour cut by the crop
            ar2 = rng.uniform(3, 7)
            l2 = rng.uniform(18, 34) * np.sqrt(ar2)
            edge = rng.choice([0.0, float(size)])
            rows.append({"x_px": edge, "y_px": rng.uniform(0, size), "length_um": l2, "width_um": l2 / ar2,
                         "angle_deg": rng.uniform(0, 180), "kind": "rod", "depth": rng.uniform(0, 0.5)})
        img, _ = render_particles(pd.DataFrame(rows), shape=(size, size), pixel_size_um=pixel_size_um,
                                  background=rng.uniform(170, 220), illumination=0.1, noise_std=rng.uniform(1, 4), seed=rng)
        images[i] = img
    return images, y


def make_regression_set(
    n_groups: int = 9,
    n_per_group: int = 4,
    *,
    shape: tuple[int, int] = (128, 128),
    pixel_size_um: float = 0.5,
    pore_um: tuple[float, float] = (6.0, 16.0),
    seed: int | None = 0,
):
    """Porous-structure images whose mean pore diameter (µm) is the regression target.

    Stands in for the seed-004 FESEM images of freeze-dried cakes (nine formulations, the mass
    transfer coefficient growing with pore size): group ``g`` has mean pore diameter spread
    evenly over ``pore_um``; every image gets a random illumination gradient and brightness
    offset, so raw intensities carry no information about the target.

    Returns
    -------
    images : ndarray uint8, shape (n_groups * n_per_group, rows, cols)
    y : ndarray float, the group's mean pore diameter in µm
    groups : ndarray of str, group names ``A``, ``B``, ...
    """
    if n_groups < 2 or n_per_group < 1:
        raise ConfigError(f"need n_groups ≥ 2 and n_per_group ≥ 1, got {n_groups}, {n_per_group}")
    rng = np.random.default_rng(seed)
    h, w = shape
    targets = np.linspace(pore_um[0], pore_um[1], n_groups)
    images, y, groups = [], [], []
    for g, d in enumerate(targets):
        for _ in range(n_per_group):
            # pores cover ~45 % of the area whatever their size
            n = int(0.45 * h * w * pixel_size_um**2 / (np.pi * (d / 2) ** 2))
            ecd = d * np.exp(rng.normal(0, 0.15, n))
            ar = rng.uniform(1.0, 1.6, n)
            length = ecd * np.sqrt(ar)
            parts = pd.DataFrame({"x_px": rng.uniform(0, w, n), "y_px": rng.uniform(0, h, n), "length_um": length,
                                  "width_um": length / ar, "angle_deg": rng.uniform(0, 180, n), "kind": "ellipse",
                                  "depth": rng.uniform(0, 0.2, n)})
            img, _ = render_particles(parts, shape=shape, pixel_size_um=pixel_size_um, background=rng.uniform(120, 220),
                                      illumination=rng.uniform(0.3, 0.6), noise_std=3.0, seed=rng)
            images.append(img)
            y.append(float(d))
            groups.append(chr(ord("A") + g % 26) + ("" if g < 26 else str(g // 26)))
    return np.stack(images), np.asarray(y), np.asarray(groups)
