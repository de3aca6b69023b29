"""Annotations in the formats labs have, read into one form for the trainable segmenters.

:func:`load_annotations` recognises (``format="auto"``) or is told (``format=...``):

``masks``
    A folder of images with an instance label image beside each (``NAME.jpg`` + ``NAME_mask.tif``;
    suffixes ``_mask``, ``_masks``, ``_labels``, ``_label``; PNG/TIFF, 8/16/32-bit), or label
    images of the same stem in a second folder (``mask_dir``). The exchange format of
    Cellpose, StarDist, ImageJ/Fiji and napari.
``objects``
    One binary mask per object, the Data Science Bowl 2018 layout: ``ROOT/ID/images/ID.png`` and
    ``ROOT/ID/masks/*.png`` (any nonzero pixel belongs to that object).
``coco``
    A COCO instance file (polygons or RLE), a ``.json`` file or the one COCO file in a folder.
``labelme``
    LabelMe JSON files (one per image, ``imagePath`` beside it): ``polygon``, ``rectangle``,
    ``circle`` shapes are objects (shapes sharing a ``group_id`` are one object). A shape labelled
    ``roi`` marks the annotated region (pixels outside every ``roi`` are unlabelled); shapes
    labelled ``background`` mark known background.

Partial annotation (for the pixel classifier, which learns from labelled pixels only):

- ``NAME_scribbles.png`` beside ``NAME.png``: 0 unlabelled, 1 background, 2 object (ilastik's
  label export numbering); scribbles may be lines or blobs anywhere;
- ``NAME_roi.png`` beside an instance label image: only pixels inside the region of interest
  (nonzero) are annotated, objects outside it were not drawn and are not treated as background.

Every reader returns a list of :class:`Annotation`; :meth:`Annotation.targets` turns one into
the training class map (0 unlabelled, 1 background, 2 object interior, 3 object boundary).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision.io import IMAGE_SUFFIXES, natural_key, read_image
from crystalloop.vision.learn.data import load_coco

__all__ = [
    "Annotation",
    "ANNOTATION_FORMATS",
    "TARGET_CLASSES",
    "load_annotations",
    "detect_format",
]

#: Formats :func:`load_annotations` reads.
ANNOTATION_FORMATS = ("masks", "objects", "coco", "labelme")
#: Training class numbers: 0 means unlabelled (not learned from).
TARGET_CLASSES = {"unlabelled": 0, "background": 1, "interior": 2, "boundary": 3}
_MASK_SUFFIXES = ("_mask", "_masks", "_labels", "_label")
_PARTIAL_SUFFIXES = ("_scribbles", "_roi")


@dataclass
class Annotation:
    """One annotated image.

    Attributes
    ----------
    name : str
        Image stem (or file name) for reports.
    image : ndarray
        As read: ``(H, W)`` or ``(H, W, 3)`` RGB, original dtype.
    labels : ndarray of int32, shape (H, W), or None
        Instance labels (0 background); None for scribble-only annotations.
    known : ndarray of bool, shape (H, W), or None
        Pixels whose class is annotated (a region of interest); None means all of them.
    scribbles : ndarray of uint8, shape (H, W), or None
        Scribble classes: 0 unlabelled, 1 background, 2 object.
    source : str
        File the annotation came from and its format.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray | None = None
    known: np.ndarray | None = None
    scribbles: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every pixel annotated with instance labels (usable for instance validation)."""
        return self.labels is not None and (self.known is None or bool(self.known.all()))

    def targets(self, *, boundary_px: int = 1, boundary: bool = True) -> np.ndarray:
        """Training class map: 0 unlabelled, 1 background, 2 interior, 3 boundary.

        Parameters
        ----------
        boundary_px : int
            Width of the boundary band drawn inside each object along its outline, in pixels.
        boundary : bool
            Mark object boundaries as class 3 (so a classifier learns to separate touching
            objects); with False objects are class 2 throughout.
        """
        h, w = self.image.shape[:2]
        out = np.zeros((h, w), np.uint8)
        if self.labels is not None:
            lab = self.labels
            out[:] = 1
            out[lab > 0] = 2
            if boundary:
                out[_boundaries(lab, int(boundary_px))] = 3
            if self.known is not None:
                out[~self.known] = 0
        if self.scribbles is not None:
            s = self.scribbles
            out[s == 1] = 1
            out[s == 2] = 2
        return out


def _boundaries(lab: np.ndarray, width: int) -> np.ndarray:
    """Object pixels within ``width`` px of another label or the background (inner boundary)."""
    lab32 = lab.astype(np.float32)
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return (lab > 0) & ((cv2.dilate(lab32, k) != lab32) | (cv2.erode(lab32, k) != lab32))


def _as_labels(mask: np.ndarray, where: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        if not (m == m[:, :, :1]).all():
            raise ImageError(f"label image {where} has {m.shape[2]} different channels; expected one integer "
                             "label per pixel (a grey or 16-bit label image)")
        m = m[:, :, 0]
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
            raise ImageError(f"label image {where} holds non-integer values; expected integer instance labels")
    elif m.dtype.kind not in "iub":
        raise ImageError(f"label image {where} has dtype {m.dtype}; expected integer instance labels")
    if m.size and m.min() < 0:
        raise ImageError(f"label image {where} holds negative labels (min {int(m.min())}); expected 0 = background, 1..n")
    return m.astype(np.int32)


def _same_shape(a: np.ndarray, img: np.ndarray, what: str, where: str, img_where: str) -> None:
    if a.shape[:2] != img.shape[:2]:
        raise ImageError(f"{what} {where} is {a.shape[0]}×{a.shape[1]} px but image {img_where} is "
                         f"{img.shape[0]}×{img.shape[1]} px")


# --- format detection ------------------------------------------------------------------------


def _json_kind(p: Path) -> str | None:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(d, dict) and isinstance(d.get("images"), list) and isinstance(d.get("annotations"), list):
        return "coco"
    if isinstance(d, dict) and isinstance(d.get("shapes"), list):
        return "labelme"
    return None


def detect_format(path: str | Path) -> str:
    """The annotation format of a file or folder (one of :data:`ANNOTATION_FORMATS`)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"annotations {str(p)!r} do not exist; expected a folder or a COCO/LabelMe .json file")
    if p.is_file():
        kind = _json_kind(p) if p.suffix.lower() == ".json" else None
        if kind is None:
            raise ConfigError(f"annotation file {str(p)!r} is neither COCO (top-level 'images' and 'annotations') "
                              "nor LabelMe ('shapes'); give a folder for image + label-image pairs")
        return kind
    kinds = {_json_kind(j) for j in p.glob("*.json")} - {None}
    if "coco" in kinds:
        return "coco"
    if "labelme" in kinds:
        return "labelme"
    if any((d / "images").is_dir() and (d / "masks").is_dir() for d in p.iterdir() if d.is_dir()):
        return "objects"
    return "masks"


def load_annotations(path: str | Path, *, format: str = "auto", mask_dir: str | Path | None = None) -> list[Annotation]:
    """Read annotated images from a folder or file in any of :data:`ANNOTATION_FORMATS`.

    Parameters
    ----------
    path : path
        Folder or ``.json`` file.
    format : {"auto", "masks", "objects", "coco", "labelme"}
        ``auto`` detects it (:func:`detect_format`).
    mask_dir : path, optional
        ``masks`` format only: folder of label images named like the images.

    Returns
    -------
    list of Annotation
        In natural file order.
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in ANNOTATION_FORMATS:
        raise ConfigError(f"annotation format {format!r} is not supported; expected 'auto' or one of {list(ANNOTATION_FORMATS)}")
    p = Path(path)
    if fmt == "coco":
        if p.is_dir():
            files = [j for j in sorted(p.glob("*.json")) if _json_kind(j) == "coco"]
            if len(files) != 1:
                raise ConfigError(f"folder {str(p)!r} holds {len(files)} COCO files; expected exactly one (or give the file)")
            p = files[0]
        images, labels, meta = load_coco(p, channels=3)
        return [Annotation(Path(m["file_name"]).stem, im, lab, source=f"{p} (coco)", meta=m)
                for im, lab, m in zip(images, labels, meta, strict=True)]
    if not p.is_dir() and fmt != "labelme":
        raise ConfigError(f"{fmt} annotations must be a folder; got the file {str(p)!r}")
    if fmt == "masks":
        out = _load_masks(p, mask_dir)
    elif fmt == "objects":
        out = _load_objects(p)
    else:
        out = _load_labelme(p)
    if not out:
        raise ConfigError(f"no annotated images found in {str(p)!r} ({fmt} format)")
    return out


# --- image + label image folders (and partial annotations) ----------------------------------


def _split_suffix(stem: str) -> tuple[str, str | None]:
    for s in _MASK_SUFFIXES + _PARTIAL_SUFFIXES:
        if stem.endswith(s):
            return stem[: -len(s)], s
    return stem, None


def _load_masks(folder: Path, mask_dir: str | Path | None) -> list[Annotation]:
    files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: natural_key(f.name))
    images, extra = {}, {}
    for f in files:
        stem, suf = _split_suffix(f.stem)
        if suf is None:
            images[stem] = f
        else:
            key = "mask" if suf in _MASK_SUFFIXES else suf[1:]
            extra.setdefault(stem, {})[key] = f
    if mask_dir is not None:
        md = Path(mask_dir)
        if not md.is_dir():
            raise ConfigError(f"mask folder {str(md)!r} does not exist")
        for f in md.iterdir():
            stem, suf = _split_suffix(f.stem)
            if f.suffix.lower() in IMAGE_SUFFIXES and stem in images and suf in (None, *_MASK_SUFFIXES):
                extra.setdefault(stem, {})["mask"] = f
    out = []
    for stem, f in images.items():
        got = extra.get(stem, {})
        if not got:
            raise ConfigError(f"image {str(f)!r} has no annotation: expected {stem}_mask.* (instance labels), "
                              f"{stem}_scribbles.* or {stem}_roi.* beside it{' or a label image in ' + str(mask_dir) if mask_dir else ''}")
        img = read_image(f)
        ann = Annotation(stem, img, source=f"{f} (masks)")
        if "mask" in got:
            ann.labels = _as_labels(read_image(got["mask"]), repr(str(got["mask"])))
            _same_shape(ann.labels, img, "label image", repr(str(got["mask"])), repr(str(f)))
        if "roi" in got:
            if ann.labels is None:
                raise ConfigError(f"region of interest {str(got['roi'])!r} needs a label image {stem}_mask.* "
                                  "with the objects drawn inside it")
            roi = read_image(got["roi"])
            roi = roi[:, :, 0] if roi.ndim == 3 else roi
            _same_shape(roi, img, "region of interest", repr(str(got["roi"])), repr(str(f)))
            ann.known = roi > 0
            if not ann.known.any():
                raise ImageError(f"region of interest {str(got['roi'])!r} is empty (all pixels 0)")
        if "scribbles" in got:
            s = read_image(got["scribbles"])
            s = s[:, :, 0] if s.ndim == 3 else s
            _same_shape(s, img, "scribble image", repr(str(got["scribbles"])), repr(str(f)))
            bad = sorted(set(np.unique(s).tolist()) - {0, 1, 2})
            if bad:
                raise ImageError(f"scribble image {str(got['scribbles'])!r} holds values {bad[:5]}; expected "
                                 "0 unlabelled, 1 background, 2 object")
            ann.scribbles = s.astype(np.uint8)
            if ann.labels is None and not ann.scribbles.any():
                raise ImageError(f"scribble image {str(got['scribbles'])!r} labels no pixel")
        out.append(ann)
    return out


# --- one binary mask per object --------------------------------------------------------------


def _load_objects(folder: Path) -> list[Annotation]:
    out = []
    for d in sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
        idir, mdir = d / "images", d / "masks"
        if not (idir.is_dir() and mdir.is_dir()):
            continue
        ims = sorted(f for f in idir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(ims) != 1:
            raise ConfigError(f"{str(idir)!r} holds {len(ims)} images; expected exactly one per sample")
        img = read_image(ims[0])
        lab = np.zeros(img.shape[:2], np.int32)
        masks = sorted((f for f in mdir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: natural_key(f.name))
        n = 0
        for mf in masks:
            m = read_image(mf)
            m = m.max(axis=2) if m.ndim == 3 else m
            _same_shape(m, img, "object mask", repr(str(mf)), repr(str(ims[0])))
            if m.any():
                n += 1
                lab[m > 0] = n
        out.append(Annotation(d.name, img, lab, source=f"{d} (objects, {n} masks)"))
    return out


# --- LabelMe ----------------------------------------------------------------------------------


def _labelme_shape_mask(shape: dict, h: int, w: int, where: str) -> np.ndarray:
    pts = np.asarray(shape.get("points", []), dtype=np.float64)
    kind = shape.get("shape_type") or "polygon"
    m = np.zeros((h, w), np.uint8)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ConfigError(f"{where}: points must be a list of [x, y] pairs, got {shape.get('points')!r}")
    if kind == "polygon":
        if len(pts) < 3:
            raise ConfigError(f"{where}: a polygon needs at least 3 points, got {len(pts)}")
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = np.round(pts[:2]).astype(int)
        cv2.rectangle(m, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), 1, thickness=-1)
    elif kind == "circle":
        (cx, cy), (px, py) = pts[:2]
        cv2.circle(m, (int(round(cx)), int(round(cy))), int(round(np.hypot(px - cx, py - cy))), 1, thickness=-1)
    elif kind in ("linestrip", "line"):
        cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 1, thickness=3)
    else:
        raise ConfigError(f"{where}: shape_type {kind!r} is not supported; expected polygon, rectangle, circle, "
                          "line or linestrip")
    return m.astype(bool)


def _load_labelme_file(jf: Path) -> Annotation:
    try:
        d = json.loads(jf.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"LabelMe file {str(jf)!r} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict) or not isinstance(d.get("shapes"), list):
        raise ConfigError(f"{str(jf)!r} is not a LabelMe file: expected a 'shapes' list")
    if d.get("imagePath"):
        img = read_image(jf.parent / d["imagePath"])
    elif d.get("imageData"):
        buf = np.frombuffer(base64.b64decode(d["imageData"]), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ImageError(f"{str(jf)!r}: imageData cannot be decoded")
        if img.ndim == 3:
            img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    else:
        raise ConfigError(f"{str(jf)!r} has neither 'imagePath' nor 'imageData'")
    h, w = img.shape[:2]
    if ("imageHeight" in d and d["imageHeight"] and int(d["imageHeight"]) != h) or \
            ("imageWidth" in d and d["imageWidth"] and int(d["imageWidth"]) != w):
        raise ImageError(f"{str(jf)!r}: the image is {h}×{w} px but the file says "
                         f"{d.get('imageHeight')}×{d.get('imageWidth')}")
    lab = np.zeros((h, w), np.int32)
    roi = np.zeros((h, w), bool)
    bg = np.zeros((h, w), bool)
    groups: dict = {}
    has_roi = False
    for k, shape in enumerate(d["shapes"]):
        where = f"{jf}: shapes[{k}]"
        if not isinstance(shape, dict):
            raise ConfigError(f"{where} is not an object")
        m = _labelme_shape_mask(shape, h, w, where)
        name = str(shape.get("label", "")).strip().lower()
        if name == "roi":
            has_roi = True
            roi |= m
        elif name in ("background", "_background_"):
            bg |= m
        else:
            g = shape.get("group_id")
            key = ("g", g) if g is not None else ("s", k)
            if key not in groups:
                groups[key] = len(groups) + 1
            lab[m] = groups[key]
    known = None
    if has_roi:
        known = roi | bg | (lab > 0)
    scrib = None
    if bg.any():
        scrib = np.where(bg, 1, 0).astype(np.uint8)
    return Annotation(jf.stem, img, lab, known=known, scribbles=scrib, source=f"{jf} (labelme)",
                      meta={"n_objects": len(groups)})


def _load_labelme(p: Path) -> list[Annotation]:
    if p.is_file():
        return [_load_labelme_file(p)]
    files = sorted((j for j in p.glob("*.json") if _json_kind(j) == "labelme"), key=lambda f: natural_key(f.name))
    return [_load_labelme_file(j) for j in files]
