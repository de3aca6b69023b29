"""Training data for the learned estimators: image checks, normalization and dataset loaders.

Loaders return plain numpy arrays so a notebook can inspect them:

- :func:`load_coco` — COCO-format polygon (or RLE) annotations, as the OpenCrystalData polystyrene set
  (seed 000) uses, rasterized to instance label images;
- :func:`load_mask_folder` — a folder of images with masks beside them (``name.png`` +
  ``name_mask.tif``) or in a second folder, e.g. ``../shared/data/imagegrains-fh/train``;
- :func:`labels_to_classes` — instance label masks → pixel classes (binary, or background /
  interior / boundary so that touching objects stay separable).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crystalloop.errors import ConfigError, ImageError
from crystalloop.vision import _validate
from crystalloop.vision.io import IMAGE_SUFFIXES, read_image

__all__ = [
    "read_image",
    "check_image",
    "normalize_image",
    "load_coco",
    "load_mask_folder",
    "labels_to_classes",
    "IMAGE_SUFFIXES",
]


def check_image(image, *, channels: int = 1, name: str = "image") -> np.ndarray:
    """Validate one image (the vision-wide check) and return it as ``(H, W, channels)``.

    The dtype, emptiness, shape and finiteness checks are those of every vision function
    (:func:`crystalloop.vision._validate.check_image`); this adds the channel layout a learned
    model expects. A gray image given to a 3-channel model is replicated; an RGB(A) image given
    to a 1-channel model is an error (convert it explicitly, e.g. with ``cv2.cvtColor``), as is
    any other channel count.
    """
    arr = _validate.check_image(np.asarray(image), name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape[0] < 4 or arr.shape[1] < 4:
        raise ImageError(f"{name} has shape {arr.shape}; expected at least 4×4 pixels")
    if arr.ndim == 2:
        arr = arr[:, :, None]
        if channels == 3:
            arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] != channels:
        raise ImageError(
            f"{name} has {arr.shape[2]} channels (shape {arr.shape}); the model expects {channels} "
            f"({'gray' if channels == 1 else 'RGB'}). Convert the image or use channels={arr.shape[2]}."
        )
    return arr


def normalize_image(image: np.ndarray, mode: str = "dtype") -> np.ndarray:
    """Scale an ``(H, W, C)`` image to float32 around [0, 1].

    ``mode="dtype"`` divides by the dtype range (uint8: 255, uint16: 65535; floats are kept),
    so absolute brightness is preserved (needed to tell an empty frame from a crowded one);
    ``mode="percentile"`` maps the 1st/99.8th percentiles to 0/1 per image (robust across
    cameras and bit depths, as StarDist does).
    """
    x = np.asarray(image, dtype=np.float32)
    if mode == "dtype":
        kind = np.asarray(image).dtype
        if kind == np.uint8:
            return x / 255.0
        if kind == np.uint16:
            return x / 65535.0
        if kind.kind == "b":
            return x
        if kind.kind in "iu":
            return x / float(max(np.abs(x).max(), 1.0))
        return x
    if mode == "percentile":
        lo, hi = np.percentile(x, [1.0, 99.8])
        return ((x - np.float32(lo)) / np.float32(max(float(hi - lo), 1e-6))).astype(np.float32)
    raise ConfigError(f"normalize={mode!r} is not supported; expected 'dtype' or 'percentile'")


# --- COCO ------------------------------------------------------------------------------------


def _rle_decode(rle: dict, height: int, width: int) -> np.ndarray:
    counts = rle.get("counts")
    if isinstance(counts, str):  # compressed COCO RLE (LEB128-like, see pycocotools maskApi.c)
        vals, i, s = [], 0, counts.encode("ascii")
        while i < len(s):
            x, k, more = 0, 0, True
            while more:
                c = s[i] - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                i += 1
                k += 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(vals) > 2:
                x += vals[-2]
            vals.append(x)
        counts = vals
    flat = np.zeros(height * width, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if c < 0 or pos + c > flat.size:
            raise ConfigError(f"RLE counts overflow a {height}×{width} image")
        flat[pos : pos + c] = val
        pos += c
        val = not val
    return flat.reshape((width, height)).T  # COCO RLE is column-major


def load_coco(annotation_file: str | Path, image_dir: str | Path | None = None, *, channels: int = 1):
    """Load a COCO instance-segmentation file.

    Parameters
    ----------
    annotation_file : path
        COCO JSON with ``images``, ``annotations`` (``segmentation`` as polygons or RLE) and
        ``categories``.
    image_dir : path, optional
        Folder of the image files (default: the JSON's folder).
    channels : int
        1 converts RGB images to gray (luma), 3 keeps/replicates RGB.

    Returns
    -------
    images : list of ndarray
        As read, ``(H, W)`` or ``(H, W, 3)``.
    labels : list of ndarray int32
        Instance label images (0 = background, 1..n = annotations in file order).
    meta : list of dict
        Per image: ``file_name``, ``image_id``, ``category_ids`` (one per instance label).
    """
    import cv2

    annotation_file = Path(annotation_file)
    image_dir = Path(image_dir) if image_dir is not None else annotation_file.parent
    try:
        data = json.loads(annotation_file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"COCO annotation file {annotation_file} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"COCO annotation file {annotation_file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ConfigError(f"{annotation_file} is not a COCO file: expected top-level 'images' and 'annotations' lists")
    by_id = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ConfigError(f"{annotation_file}: images[{k}] lacks 'id' or 'file_name'")
        by_id[im["id"]] = {"info": im, "anns": []}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise ConfigError(f"{annotation_file}: annotations[{k}] lacks 'image_id' or 'segmentation'")
        if ann["image_id"] not in by_id:
            raise ConfigError(f"{annotation_file}: annotations[{k}] refers to image_id={ann['image_id']!r}, which is not in 'images'")
        by_id[ann["image_id"]]["anns"].append((k, ann))
    images, labels, meta = [], [], []
    for image_id, entry in by_id.items():
        info = entry["info"]
        img = read_image(image_dir / info["file_name"])
        if channels == 1 and img.ndim == 3:
            img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)
        h, w = img.shape[:2]
        if ("height" in info and int(info["height"]) != h) or ("width" in info and int(info["width"]) != w):
            raise ImageError(
                f"{annotation_file}: image {info['file_name']} is {h}×{w} px but the annotation says "
                f"{info.get('height')}×{info.get('width')}"
            )
        lab = np.zeros((h, w), dtype=np.int32)
        cats = []
        for k, ann in entry["anns"]:
            seg = ann["segmentation"]
            m = np.zeros((h, w), dtype=np.uint8)
            if isinstance(seg, list):
                for poly in seg:
                    pts = np.asarray(poly, dtype=np.float64)
                    if pts.ndim != 1 or pts.size < 6 or pts.size % 2:
                        raise ConfigError(f"{annotation_file}: annotations[{k}] has a polygon with {pts.size} coordinates; expected an even number ≥ 6")
                    cv2.fillPoly(m, [np.round(pts.reshape(-1, 2)).astype(np.int32)], 1)
            elif isinstance(seg, dict) and "counts" in seg:
                m = _rle_decode(seg, h, w).astype(np.uint8)
            else:
                raise ConfigError(f"{annotation_file}: annotations[{k}].segmentation is neither polygons nor RLE")
            if m.any():
                cats.append(ann.get("category_id"))
                lab[m.astype(bool)] = len(cats)
        images.append(img)
        labels.append(lab)
        meta.append({"file_name": info["file_name"], "image_id": image_id, "category_ids": cats})
    if not images:
        raise ConfigError(f"{annotation_file} lists no images")
    return images, labels, meta


# --- image/mask folders ----------------------------------------------------------------------


def load_mask_folder(
    image_dir: str | Path,
    mask_dir: str | Path | None = None,
    *,
    mask_suffix: str = "_mask",
    channels: int = 1,
):
    """Pair images with masks by file stem.

    With ``mask_dir=None`` masks sit beside the images as ``<stem><mask_suffix>.<ext>``
    (imagegrains style); otherwise ``mask_dir`` holds ``<stem>.<ext>`` or
    ``<stem><mask_suffix>.<ext>``. Masks may be class maps or instance labels.

    Returns
    -------
    images, masks : list of ndarray
    names : list of str
    """
    import cv2

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ConfigError(f"image folder {image_dir} does not exist")
    mdir = Path(mask_dir) if mask_dir is not None else image_dir
    if not mdir.is_dir():
        raise ConfigError(f"mask folder {mdir} does not exist")
    masks_by_stem = {}
    for p in sorted(mdir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            stem = p.stem[: -len(mask_suffix)] if mask_suffix and p.stem.endswith(mask_suffix) else p.stem
            if mask_dir is None and not p.stem.endswith(mask_suffix):
                continue
            masks_by_stem[stem] = p
    images, masks, names = [], [], []
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or (mask_suffix and p.stem.endswith(mask_suffix)):
            continue
        if p.stem not in masks_by_stem:
            raise ConfigError(f"image {p} has no mask in {mdir} (looked for {p.stem}{mask_suffix}.* / {p.stem}.*)")
        img = read_image(p)
        if channels == 1 and img.ndim == 3:
            img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)
        mask = read_image(masks_by_stem[p.stem])
        if mask.ndim == 3:
            mask = mask[:, :, 0]
        if mask.shape != img.shape[:2]:
            raise ImageError(f"mask {masks_by_stem[p.stem]} is {mask.shape[0]}×{mask.shape[1]} px but image {p} is {img.shape[0]}×{img.shape[1]} px")
        images.append(img)
        masks.append(mask.astype(np.int32))
        names.append(p.stem)
    if not images:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {image_dir}")
    return images, masks, names


def labels_to_classes(labels: np.ndarray, mode: str = "binary", *, boundary_px: int = 2) -> np.ndarray:
    """Turn an instance label image into pixel classes.

    ``mode="binary"``: 0 background, 1 object. ``mode="boundary"``: 0 background, 1 object
    interior, 2 object boundary (pixels within ``boundary_px`` of another label or the
    background), which lets a pixel classifier separate touching objects.
    """
    import cv2

    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iub":
        raise ImageError(f"label image has shape {lab.shape} and dtype {lab.dtype}; expected a 2-D integer array")
    fg = lab > 0
    if mode == "binary":
        return fg.astype(np.uint8)
    if mode != "boundary":
        raise ConfigError(f"mode={mode!r}; expected 'binary' or 'boundary'")
    lab32 = lab.astype(np.float32)
    k = np.ones((2 * boundary_px + 1, 2 * boundary_px + 1), np.uint8)
    edge = (cv2.dilate(lab32, k) != cv2.erode(lab32, k)) & fg
    out = fg.astype(np.uint8)
    out[edge] = 2
    return out
