"""``bottleneck export``, ``predict`` and ``finetune``."""

from __future__ import annotations

import sys

import click
from bottleneck_transfer.cli import options

_SHOW_FAILED = 10


def _show_failed(failed: list[tuple[str, str]]) -> None:
    for item_id, reason in failed[:_SHOW_FAILED]:
        click.echo(f"  skipped {item_id}: {reason}", err=True)
    if len(failed) > _SHOW_FAILED:
        click.echo(f"  … and {len(failed) - _SHOW_FAILED} more", err=True)


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@options.out(
    "model.keras (one Keras model), model.tflite, model.onnx, or a folder (any head; rbf-svm "
    "and knn need one; a SavedModel with --format saved-model).",
    required=True,
    dir_okay=True,
)
@options.force()
@click.option(
    "--head",
    help="Spec of a registered head kind fitted on the whole cache, with parameters as in "
    "'logreg:C=0.1' or 'dense:hidden=64'; or best: the head a comparison chooses by "
    "--metric (read from --from-report, else a 5-fold compare of the default heads on "
    "CACHE). [default: the registry's DEFAULT_HEAD, logreg]",
)
@options.metric("--head best")
@click.option(
    "--from-report",
    type=click.Path(),
    metavar="DIR",
    help="With --head best: the folder `bottleneck compare CACHE -o DIR` wrote; its choice is "
    "used when it compared CACHE by --metric.",
)
@options.seed("the comparison of --head best.")
@click.option(
    "--head-file",
    type=click.Path(dir_okay=False),
    help="A head saved by `bottleneck train` (.skops) instead of fitting --head.",
)
@click.option(
    "--base",
    type=click.Path(dir_okay=False),
    help="The base model file the cache was made with (verified by sha256).",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="The weights file, if any.")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Source images the export is checked on (0: no check).",
)
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Parity tolerance.")
@click.option(
    "--format",
    metavar="FORMAT",
    help="keras, folder, saved-model, tflite or onnx (default: from --out's suffix, else "
    "folder). saved-model, tflite and onnx need TensorFlow; onnx the [onnx] extra. A "
    "SavedModel goes into OUT/1/ (OUT/N+1/ when OUT holds versions: no --force needed).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="TFLite: the fixed batch size of its [batch, H, W, C] input.",
)
@click.option(
    "--quantize",
    type=click.Choice(["dynamic", "float16", "int8"]),
    help="TFLite: post-training quantization (int8: calibrated on the cache's training "
    "images); export reports the accuracy change on other cached images.",
)
@options.calibrate()
@options.dry_run(
    "written (form, path, size, input shape, class names); fit, build, load and write nothing"
)
@options.json_flag()
def export(
    cache: str,
    out: str,
    force: bool,
    head: str | None,
    metric: str | None,
    from_report: str | None,
    seed: int,
    calibrate: bool,
    sample: int,
    atol: float,
    dry_run: bool,
    as_json: bool,
    **settings,
) -> None:
    """Export a head on CACHE's base as one deployable model.

    Fits the head on the whole cache (or loads --head-file), rebuilds the base from the
    cache's provenance (its weights must be the cache's), and writes a Keras model that
    maps raw uint8 images of any size to class probabilities, loadable with plain
    keras.saving.load_model (or converted: --format saved-model, tflite, onnx). Before
    writing, it runs itself with its runtime on --sample source images against the head on
    the cached features. The class names go beside it (NAME.labels.txt, or labels.txt in a
    folder).

    \b
    Examples:
      bottleneck export caches/train.h5 --head logreg -o model.keras
      bottleneck export caches/train.h5 --head logreg -o model.keras --dry-run
      bottleneck export caches/train.h5 --head best --metric balanced-accuracy -o model.keras
      bottleneck export caches/train.h5 --head best --from-report reports/run1 -o model.keras
      bottleneck export caches/train.h5 --head-file heads/logreg.skops -o model.keras
      bottleneck export caches/train.h5 --head rbf-svm -o exported/rbf
      bottleneck export caches/train.h5 --head linear-svm --no-calibrate -o svm.keras
      bottleneck export caches/train.h5 --head logreg -o model.tflite
      bottleneck export caches/train.h5 --head logreg -o model.tflite --quantize int8
      bottleneck export caches/train.h5 --head logreg -o exported/sm --format saved-model
      python -c "import keras; m = keras.saving.load_model('model.keras')"
    """
    from bottleneck_transfer.deploy.export import adds_a_version, plan_export
    from bottleneck_transfer.deploy.export import export as run_export
    from bottleneck_transfer.heads.registry import DEFAULT_HEAD, calibrated_specs

    if not adds_a_version(out, settings["format"]):
        options.refuse_overwrite(out, force)
    if (from_report is not None or metric is not None) and head != "best":
        raise click.UsageError("--metric and --from-report go with --head best")
    if head == "best" and dry_run and from_report is None:
        raise click.UsageError("--dry-run --head best reads the choice from --from-report DIR")
    if head == "best":
        from bottleneck_transfer.heads.best import best_head

        head, origin = best_head(cache, metric=metric, report=from_report, random_state=seed)
        click.echo(f"--head best: {head}, {origin}", err=True)
    if dry_run:
        done = plan_export(cache, out, head=head or DEFAULT_HEAD, **settings)
    else:
        spec = calibrated_specs([head or DEFAULT_HEAD], calibrate)[0]
        done = run_export(cache, out, head=spec, sample=sample, atol=atol, **settings)
    if as_json:
        options.echo_json(done.to_dict())
    else:
        click.echo(done.line())


@click.command()
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@options.out(
    "the predictions, a .csv, .parquet or .json file (default: print them); .csv and "
    ".parquet are written as the images (texts) go, and a rerun after a killed run resumes."
)
@options.force()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet"]),
    help="Predictions format (default: from --out's extension, else csv).",
)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@options.classes("Class subset of a labelled source (5-9).")
@options.limit()
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images (texts) per model call (default: as extract, by device and input size).",
)
@click.option(
    "--text-column",
    default=None,
    metavar="COLUMN",
    help="A text export's CSV, JSON-lines or Parquet input: its column of texts (default: text).",
)
@options.image_reading()
@options.trust_graph("a SavedModel, TFLite or ONNX export")
@options.quiet()
@options.json_flag("the predictions, or with --out a summary of the run.")
def predict(
    model: str,
    images: tuple[str, ...],
    out: str | None,
    fmt: str | None,
    top_k: int,
    force: bool,
    quiet: bool,
    as_json: bool,
    **settings,
) -> None:
    """Predict the top-k classes of IMAGES (or texts) with an exported MODEL.

    MODEL is an export: a .keras, .tflite or .onnx file, an export folder or a SavedModel
    export folder. IMAGES is one folder (class folders or flat), CSV manifest, IDX/NPZ file
    or fashion-mnist:test, or image files. A text base's export takes texts instead: a .txt
    file (one text a line), a CSV/JSON-lines/Parquet table's --text-column, or a folder of
    .txt files. Writes one row per image (text): id, label (if known), class_1,
    probability_1, ... (score_1, ... for a head exported uncalibrated: its values are not
    probabilities). Bad images (texts) are reported and skipped.

    \b
    Examples:
      bottleneck predict model.keras new_images/ -o predictions.csv --top-k 3
      bottleneck predict exported/rbf a.jpg b.png --json
      bottleneck predict model.onnx new_images/ -o predictions.csv
      bottleneck predict someone_elses.onnx new_images/ --trust-graph -o predictions.csv
      bottleneck predict model.keras new_images/ -o predictions.json
      bottleneck predict model.keras million_images.tar -o predictions.parquet
      bottleneck predict model.keras fashion-mnist:test --classes 5-9 -o fm.csv
      bottleneck predict glosses.keras new_glosses.txt -o predictions.csv
      bottleneck predict glosses.keras reviews.jsonl --text-column body -o predictions.csv
    """
    from bottleneck_transfer.deploy.predict import PredictResult, dump_predictions
    from bottleneck_transfer.deploy.predict import predict as run_predict

    if out is not None:
        options.refuse_overwrite(out, force)
    result = run_predict(
        model,
        list(images),
        out=out,
        top_k=top_k,
        fmt=fmt,
        progress=False if quiet else None,
        **settings,
    )
    if out is None:
        printed = "json" if as_json else fmt or "csv"
        dump_predictions(result, sys.stdout, printed)
        _show_failed(result.failed)
        return
    if as_json:
        options.echo_json(
            {
                "path": out,
                "images": len(result),
                "accuracy": result.accuracy,
                "failed": [{"id": i, "reason": r} for i, r in result.failed],
                "seconds": round(result.seconds, 3),
                "images_per_second": result.images_per_second,
            }
        )
        return
    unit = result.unit if isinstance(result, PredictResult) else "images"
    labelled = f", accuracy {result.accuracy:.4f} on labelled {unit}" if result.accuracy else ""
    click.echo(
        f"Wrote {out}: {len(result)} {unit}, {len(result.failed)} skipped, "
        f"{result.seconds:.1f} s ({result.images_per_second:.1f} {unit}/s){labelled}."
    )
    _show_failed(result.failed)


@click.command()
@click.argument("model", type=click.Path())
@click.argument("train")
@click.option("--val", help="Labelled validation images (early stopping), or use --val-split.")
@options.val_split()
@click.option(
    "--augment",
    is_flag=True,
    help="Random flips, rotations, zooms and shifts of the training images (Keras "
    "preprocessing layers).",
)
@options.out("the fine-tuned .keras model.", required=True)
@options.force()
@click.option(
    "--unfreeze",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Base layers to train, counted from the top of the base (nested models flattened, "
    "input layers not counted); BatchNorm layers among them stay frozen. 0 trains the head "
    "only. See 'Choosing --unfreeze' above.",
)
@click.option("--lr", "learning_rate", type=float, default=1e-5, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@options.workers()
@options.classes("Class subset of both sets (names or 5-9).")
@options.limit("Use N training images.")
@click.option("--val-limit", type=click.IntRange(min=1), help="Use N validation images.")
@options.seed()
@options.quiet()
@options.json_flag()
def finetune(
    model: str, train: str, out: str, force: bool, quiet: bool, as_json: bool, **settings
) -> None:
    """Fine-tune an exported .keras MODEL on TRAIN images: unfreeze the top of the base.

    A text base's export trains on TRAIN texts instead (a labelled CSV/JSON-lines/Parquet
    table with a text column, or a folder of .txt files by class): its top --unfreeze
    layers are the backbone's transformer layers; --augment is refused for it.

    Trains the top --unfreeze base layers and the head at a low learning rate with early
    stopping on --val (or on a --val-split share of TRAIN), keeps the best epoch (or the
    original weights if nothing beats them), and reports validation accuracy before and
    after: selection scores, measured on the set that chose the epoch and the keep-or-revert
    decision (optimistic; score on other images with `bottleneck evaluate`). Classes are
    matched by name.

    What stays frozen: every base layer below the top --unfreeze, every BatchNormalization
    layer (kept in inference mode, its statistics untouched, as the Keras guide advises),
    and the export's resize and preprocessing. What trains: the unfrozen base layers and
    the head (its Dense layers). The JSON output lists the unfrozen layers by name.

    Choosing --unfreeze: start with the base's last block or two and a low --lr (1e-5):
    the default 20 is MobileNetV2's block_16 and most of block_15; ResNet50's last stage
    (conv5, three blocks) is 33 and its last block 11. Unfreeze more only with more images
    (thousands per class) and while validation accuracy still rises; with a few hundred
    images, 0 (head only) or a few layers overfit least. Layer names and counts:
    keras.saving.load_model(MODEL).summary().

    \b
    Examples:
      bottleneck finetune model.keras data/flowers/train --val data/flowers/val \\
          --unfreeze 20 --lr 1e-5 -o tuned.keras
      bottleneck finetune model.keras data/photos --val-split 0.2 --augment -o tuned.keras
    """
    from bottleneck_transfer.deploy.finetune import finetune as run_finetune

    options.refuse_overwrite(out, force)
    result = run_finetune(model, train, out=out, progress=False if quiet else None, **settings)
    if as_json:
        options.echo_json(
            {
                "path": str(result.path),
                "val_loss_before": result.val_loss_before,
                "val_accuracy_before": result.val_accuracy_before,
                "val_loss_after": result.val_loss_after,
                "val_accuracy_after": result.val_accuracy_after,
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "kept_original": result.kept_original,
                "score_kind": SELECTION_SCORES,
                "unfrozen": result.unfrozen,
                "failed": [{"id": i, "reason": r} for i, r in result.failed],
                "seconds": round(result.seconds, 3),
            }
        )
        return
    kept = " (no epoch beat the original: kept its weights)" if result.kept_original else ""
    click.echo(
        f"Wrote {result.path}: validation accuracy {result.val_accuracy_before:.4f} -> "
        f"{result.val_accuracy_after:.4f}, loss {result.val_loss_before:.4f} -> "
        f"{result.val_loss_after:.4f} ({SELECTION_SCORES}); {len(result.unfrozen)} base "
        f"layers unfrozen, {result.epochs_run} epochs (best {result.best_epoch}){kept}."
    )
    _show_failed(result.failed)


#: What finetune's validation scores are: the set they come from chose the epoch and
#: whether to keep the tuned weights.
SELECTION_SCORES = (
    "selection scores: on the validation set that chose the epoch and the keep-or-revert "
    "decision, so optimistic; score held-out images with `bottleneck evaluate`"
)

COMMANDS = [export, predict, finetune]
