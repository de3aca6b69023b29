"""``crystalloop vision ...``: train and apply the learned image models (crystalloop.vision.learn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

vision_app = typer.Typer(help="Learned image models: U-Net segmentation, multi-label crystal classification, "
                              "image regression; predict with any saved model.", no_args_is_help=True)

_Out = Annotated[Path, typer.Option("--out", help="Output folder (model/, training.png, metrics.json, tables).")]
_Epochs = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: the model's).")]
_Seed = Annotated[int, typer.Option("--seed", help="Random seed (reproducible on the CPU).")]
_Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]


def _extra(epochs, device) -> dict:
    d = {"device": device}
    if epochs is not None:
        d["epochs"] = epochs
    return d


@vision_app.command("train-seg")
def train_seg(
    annotations: Annotated[Path | None, typer.Argument(
        help="Annotated images: a folder of images with label images (NAME_mask.tif), one mask per object "
             "(ID/images, ID/masks), a COCO or LabelMe .json (or a folder of them), scribbles "
             "(NAME_scribbles.png) or a region of interest (NAME_roi.png).")] = None,
    out: _Out = Path("seg_model"),
    method: Annotated[str, typer.Option("--method", help="With ANNOTATIONS: pixel (random forest on filter "
                                                        "features, seconds) or unet (three-class U-Net, minutes).")] = "pixel",
    fmt: Annotated[str, typer.Option("--format", help="With ANNOTATIONS: auto, masks, objects, coco or labelme.")] = "auto",
    channel: Annotated[int | None, typer.Option("--channel", help="Use this channel of colour images (0-based); "
                                                                  "default: all channels.")] = None,
    boundary_px: Annotated[int, typer.Option("--boundary-px", help="Width of the object-boundary class, px.")] = 1,
    trees: Annotated[int | None, typer.Option("--trees", help="Pixel classifier: number of trees.")] = None,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Skip the held-out validation.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a model folder that holds files.")] = False,
    coco: Annotated[Path | None, typer.Option("--coco", help="COCO annotation JSON (polygons/RLE).")] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder (masks beside as NAME_mask.*, or --masks).")] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of masks named like the images.")] = None,
    synthetic: Annotated[int, typer.Option("--synthetic", help="Renderer images: added to U-Net training with "
                                                               "ANNOTATIONS, or the whole training set without.")] = 0,
    targets: Annotated[str, typer.Option("--targets", help="Without ANNOTATIONS: binary, boundary, classes or seed002.")] = "binary",
    tile_size: Annotated[int, typer.Option("--tile-size", help="U-Net training crop size in px.")] = 128,
    pixel_size_um: Annotated[float, typer.Option("--pixel-size-um", help="Pixel size for the PSD error.")] = 1.0,
    epochs: _Epochs = None,
    seed: _Seed = 0,
    device: _Device = "auto",
) -> None:
    """Train a segmentation model and report its scores on held-out data.

    With ANNOTATIONS: few-shot training from a lab's own annotated images (pixel classifier or
    U-Net); writes MODEL/model, training.json and scores.json, for crystalloop psd --model MODEL.
    Without: the U-Net workflow on --images/--coco/--synthetic with a test split.
    """
    from crystalloop.commands import make_console

    console = make_console()
    if annotations is not None:
        from crystalloop.errors import ConfigError
        from crystalloop.vision.learn.fewshot import train_segmentation

        if coco is not None or images is not None or masks is not None:
            raise ConfigError("give the annotations once: as ANNOTATIONS or with --images/--coco, not both")
        params: dict = {}
        if method == "unet":
            params.update(tile_size=tile_size, device=device, progress=True)
            if epochs is not None:
                params["epochs"] = epochs
        elif epochs is not None:
            raise ConfigError(f"--epochs {epochs} applies to --method unet; the pixel classifier has no epochs")
        if trees is not None:
            if method != "pixel":
                raise ConfigError("--trees applies to --method pixel")
            params["n_estimators"] = trees
        info = train_segmentation(annotations, out, method=method, format=fmt, channel=channel, validate=not no_validate,
                                  synthetic=synthetic, boundary_px=boundary_px, random_state=seed, overwrite=overwrite,
                                  **params)
        n_obj = sum(i["objects"] for i in info["images"])
        console.print(f"{method}: trained on {len(info['images'])} annotated image(s), {n_obj} objects, "
                      f"in {info['train_wall_s']:.1f} s")
        s = info["scores"]
        if "f1" in s:
            console.print(f"validation ({s['how']}): instance F1@0.5 {s['f1']:.3f} (precision {s['precision']:.3f}, "
                          f"recall {s['recall']:.3f}), median ECD error {s['median_ecd_error']:+.1%}")
        else:
            console.print(f"validation: {s['how']}")
        console.print(f"wrote model/, training.json, scores.json to {out}/ (use: crystalloop psd IMAGES --model {out})")
        return
    from crystalloop.vision.learn.workflows import train_segmenter

    m = train_segmenter(out, coco=coco, image_dir=images, mask_dir=masks, synthetic=synthetic, targets=targets,
                        pixel_size_um=pixel_size_um, random_state=seed, progress=True, tile_size=tile_size,
                        **_extra(epochs, device))
    console.print(f"trained on {m['n_train']} images in {m['train_time_s']:.0f} s; tested on {m['n_test']}")
    if "pixel_accuracy" in m:
        console.print(f"pixel accuracy {m['pixel_accuracy']:.3f}; IoU " + ", ".join(f"{k} {v:.3f}" for k, v in m["iou_per_class"].items()))
    if "instances" in m:
        s = m["instances"]
        console.print(f"instance F1@0.5 {s['instance_f1']:.3f}; x50 error {s['x50_rel_error']:+.1%}")
    console.print(f"wrote model/, training.png, metrics.json to {out}/")


@vision_app.command("train-classifier")
def train_classifier_cmd(
    out: _Out = Path("classifier_model"),
    labels: Annotated[Path | None, typer.Option("--labels", help="CSV: 'file' column + one 0/1 column per label.")] = None,
    synthetic: Annotated[int, typer.Option("--synthetic", help="Train on N renderer images with the ten seed-001 labels.")] = 0,
    input_size: Annotated[int, typer.Option("--input-size", help="Images are resized to this square size.")] = 128,
    epochs: _Epochs = None,
    seed: _Seed = 0,
    device: _Device = "auto",
) -> None:
    """Train the multi-label crystal classifier; print the per-label precision/recall/F1 table."""
    from crystalloop.commands import make_console
    from crystalloop.vision.learn.workflows import train_classifier

    console = make_console()
    rep = train_classifier(out, labels_csv=labels, synthetic=synthetic, random_state=seed, progress=True,
                           input_size=input_size, **_extra(epochs, device))
    if len(rep):
        console.print((rep[["precision", "recall", "f1"]] * 100).round(1).astype(str).add("%").assign(support=rep["support"]).to_string())
    console.print(f"wrote model/, training.png, report.csv, thresholds.json, metrics.json to {out}/")


@vision_app.command("train-regressor")
def train_regressor_cmd(
    out: _Out = Path("regressor_model"),
    table: Annotated[Path | None, typer.Option("--table", help="CSV: 'file', target and group columns.")] = None,
    target: Annotated[str, typer.Option("--target", help="Target column.")] = "target",
    group: Annotated[str, typer.Option("--group", help="Group (sample) column for leave-one-group-out.")] = "group",
    synthetic: Annotated[int, typer.Option("--synthetic", help="Train on N synthetic groups of porous images.")] = 0,
    cv: Annotated[bool, typer.Option("--cv", help="Leave-one-group-out cross-validation (seed-004 Table 2).")] = False,
    compare_augmentation: Annotated[bool, typer.Option("--compare-augmentation", help="CV with and without augmentation.")] = False,
    input_size: Annotated[int, typer.Option("--input-size", help="Preprocessed images are resized to this size.")] = 128,
    epochs: _Epochs = None,
    seed: _Seed = 0,
    device: _Device = "auto",
) -> None:
    """Train the seed-004 CNN regressor (rolling ball + equalization, 4/8/16 filters)."""
    from crystalloop.commands import make_console
    from crystalloop.vision.learn.workflows import train_regressor

    console = make_console()
    m = train_regressor(out, table_csv=table, target=target, group=group, synthetic=synthetic,
                        cross_validate=cv, compare_augmentation=compare_augmentation, random_state=seed,
                        progress=True, input_size=input_size, **_extra(epochs, device))
    console.print(f"{m['n_images']} images in {m['n_groups']} groups; training R² {m['train_r2']:.3f}")
    for k, v in m.get("cv_mean_rel_error", {}).items():
        console.print(f"leave-one-group-out mean {k}: {v:.3g}")
    console.print(f"wrote model/, training.png, metrics.json{', cv.csv' if cv else ''} to {out}/")


@vision_app.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Folder of a saved model (config.json + model.pt).")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("predictions"),
    pixel_size_um: Annotated[float | None, typer.Option("--pixel-size-um", help="Segmenters: also measure particles (µm).")] = None,
) -> None:
    """Apply any saved vision model to images; write predictions.csv (+ label images/particles for segmenters)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from crystalloop.commands import make_console
    from crystalloop.vision.learn.workflows import predict_images

    console = make_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
        task = progress.add_task("images", total=None)
        table = predict_images(model, images, out, pixel_size_um=pixel_size_um,
                               progress=lambda d, t: progress.update(task, completed=d, total=t))
    console.print(f"predicted {len(table)} images; wrote predictions.csv to {out}/")


def register(app: typer.Typer) -> None:
    app.add_typer(vision_app, name="vision")
