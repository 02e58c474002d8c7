"""The `deeproute` command line: one thin command per verb; the work happens in the library.

Every command turns an InputError into one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import signal
import sys

import click

from deeproute.errors import InputError


def _report_input_errors(command):
    """Print an InputError as one line on stderr and exit with code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)

    return wrapper


def _parse_grid(value: str) -> tuple[int, int]:
    """Parse '32' or 'HxW' such as '48x32' into (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
    if not match:
        raise click.BadParameter(f"expected N or HxW such as 32 or 48x32, got {value!r}")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) else height
    return height, width


def _parse_pin_range(value: str) -> tuple[int, int]:
    """Parse '2-5' or '3' into an inclusive (low, high) pin range."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", value)
    if not match:
        raise click.BadParameter(f"expected LOW-HIGH such as 2-5, got {value!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    return low, high


def _parse_extent(value: str) -> tuple[float, float]:
    """Parse '11' or 'XxY' in µm into (x extent, y extent)."""
    parts = re.split(r"[xX]", value.strip())
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected µm such as 11 or 11x8, got {value!r}") from None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise click.BadParameter(f"expected µm such as 11 or 11x8, got {value!r}")


def _exit_on_sigterm(signum, frame):
    click.echo("terminated", err=True)  # the counterpart of Ctrl-C's "interrupted"
    raise SystemExit(128 + signum)


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


class _OneLineErrorGroup(click.Group):
    """A click group that reports usage errors in one line on stderr, with exit code 2."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            result = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.format_message(), err=True)
            sys.exit(2)
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            click.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            click.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deeproute")
@click.option("-v", "--verbose", is_flag=True, help="Log library progress to stderr.")
def main(verbose: bool) -> None:
    """Route IC nets with a fully convolutional network and deploy it in fixed point."""
    # Turn SIGTERM into SystemExit, so the cleanup that Ctrl-C gets (temporary files and
    # staging folders removed) also runs when a job scheduler or `timeout` stops a command.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter(with_module=verbose))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class _LogFormatter(logging.Formatter):
    """Log formatter that writes records like the CLI's own messages ("warning: ..."), with the module under -v."""

    def __init__(self, with_module: bool):
        super().__init__()
        self.with_module = with_module

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname.lower()}: "
        if self.with_module:
            prefix += f"{record.name}: "
        return prefix + record.getMessage()


@main.command()
# A plain path, because the library rejects a directory in one line where click prints a usage block.
@click.argument("out", type=click.Path())
@click.option("-n", "--count", type=int, default=50_000, show_default=True, help="Number of nets (samples).")
@click.option("--grid", default="32", show_default=True, help="Grid size in pixels: N or HxW.")
@click.option("--extent-um", default="11", show_default=True, help="Physical grid size in µm: S or XxY.")
@click.option("--pins", "pin_range", default="2-5", show_default=True, help="Inclusive pin-count range per net.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; with the sample count and the other options it fixes the output, whatever --workers is.")
@click.option("--label-style", default="paper", show_default=True, help="Router that draws the labels.")
@click.option("--workers", type=int, default=None, help="Worker processes [default: all cores].")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON.")
@_report_input_errors
def generate(out, count, grid, extent_um, pin_range, seed, label_style, workers, overwrite, quiet, json_out):
    """Generate a routing dataset of single nets into the HDF5 file OUT."""
    from deeproute.generate import GenerateConfig, generate_dataset

    height, width = _parse_grid(grid)
    config = GenerateConfig(
        count=count,
        height=height,
        width=width,
        extent_um=_parse_extent(extent_um),
        pin_range=_parse_pin_range(pin_range),
        seed=seed,
        label_style=label_style,
    )
    config.validate()
    with _progress_bar(count, "generate", _show_progress(quiet)) as bar:
        summary = generate_dataset(out, config, workers=workers, overwrite=overwrite, on_progress=bar.goto)
    if json_out:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        click.echo(f"wrote {out}")
        click.echo(summary.format())


@main.command()
@click.argument("path", type=click.Path())
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON.")
@_report_input_errors
def info(path, json_out):
    """Print a summary of the dataset file PATH (X/Y-only files included)."""
    from deeproute.dataset import open_dataset
    from deeproute.summary import DatasetSummary

    with open_dataset(path) as dataset:
        summary = DatasetSummary.empty(*dataset.grid)
        for start, _, labels in dataset.iter_chunks():
            pins = dataset.read_pins(start, start + labels.shape[0]) if dataset.info.has_pins else None
            summary.merge(DatasetSummary.from_arrays(labels, pins))
        details = dataset.info
    if json_out:
        report = summary.to_dict()
        report.update(
            extent_um=details.extent_um, pin_range=details.pin_range, seed=details.seed,
            label_style=details.label_style, format_version=details.format_version,
        )
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"file         {path}")
    if details.format_version is None:
        click.echo("attributes   none (X/Y-only file)")
    else:
        click.echo(
            f"made with    label style {details.label_style}, seed {details.seed}, "
            f"pins {details.pin_range[0]}-{details.pin_range[1]}, "
            f"extent {details.extent_um[0]:g} x {details.extent_um[1]:g} µm"
        )
    click.echo(summary.format())


class _progress_bar:
    """A tqdm bar on stderr with a `goto(done)` method; a no-op when disabled."""

    def __init__(self, total: int, description: str, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="net", file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()

    def goto(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)


@main.command()
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False), help="Training dataset (HDF5).")
@click.option("--val", "val_path", required=True, type=click.Path(dir_okay=False), help="Validation dataset (HDF5).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run folder for checkpoints, metrics and curves.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True, help="Global batch size.")
@click.option("--lr", type=float, default=5e-4, show_default=True, help="Adam learning rate.")
@click.option("--weight-decay", type=float, default=1e-5, show_default=True)
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant", show_default=True,
              help="Learning-rate schedule; step divides by 10 every --step-epochs.")
@click.option("--step-epochs", type=int, default=30, show_default=True)
@click.option("--fresh", is_flag=True, help="Draw a new training set from the generator every epoch.")
@click.option("--fresh-count", type=int, default=None, help="Samples per fresh epoch [default: size of --train].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto", show_default=True,
              help="bf16 mixed precision for the convolutions.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--channels", type=int, default=None, help="Feature maps per stage [default: 16].")
@click.option("--stages", type=int, default=None, help="Convolution stages [default: 15].")
@click.option("--first-kernel", type=int, default=None, help="Odd size of the first kernel [default: the smallest odd size above the grid, 33 at 32].")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@_report_input_errors
def train(train_path, val_path, out_dir, epochs, batch_size, lr, weight_decay, schedule, step_epochs, fresh,
          fresh_count, seed, amp, device, channels, stages, first_kernel, resume, quiet):
    """Train the routing FCN; writes metrics.jsonl, curves.png, best.pt and last.pt into OUT."""
    from deeproute.train import TrainConfig, train as run_training

    if fresh_count is not None and not fresh:
        raise InputError("--fresh-count needs --fresh: it sizes the freshly drawn training sets")
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
        step_epochs=step_epochs, fresh=fresh, fresh_count=fresh_count, seed=seed, amp=amp, device=device,
    )
    model_config = {}
    if channels is not None:
        model_config["channels"] = channels
    if stages is not None:
        model_config["stages"] = stages
    if first_kernel is not None:
        model_config["first_kernel"] = (first_kernel, first_kernel)

    def report(record):
        if not quiet:
            click.echo(
                f"epoch {record['epoch']:>3}  loss {record['train_loss']:.4f}  "
                f"train F1 {record['train']['f1']:.4f}  val F1 {record['val']['f1']:.4f}  "
                f"P {record['val']['precision']:.4f}  R {record['val']['recall']:.4f}  "
                f"{record['epoch_seconds']:.0f} s  {record['samples_per_s']:.0f} samples/s"
            )

    run_training(train_path, val_path, out_dir, config, model_config, resume=resume,
                 progress=_show_progress(quiet), on_epoch=report)


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint [default: the shipped model].")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Also write the figures to this JSON file.")
@click.option("--overwrite", is_flag=True, help="Replace the --json file if it exists.")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--no-route", "--pixel-only", "no_route", is_flag=True,
              help="Skip the route-level figures, whose net repair takes a few ms per net.")
@click.option("--int8", "int8_dir", type=click.Path(), default=None,
              help="Score with the integer engine of this `deeproute quantize` folder instead of a checkpoint.")
@_report_input_errors
def evaluate(data, model_path, json_path, overwrite, batch_size, device, no_route, int8_dir):
    """Score a model on DATA: pixel precision, recall, F1 and accuracy, overall and per layer,
    and the fraction of nets connected, legal and identical to the label, before and after repair."""
    from deeproute.dataset import atomic_output, check_output_file
    from deeproute.evaluate import evaluate_file
    from deeproute.metrics import format_table
    from deeproute.route_metrics import format_route_table

    if json_path:
        check_output_file(json_path, overwrite, example="report.json")  # before the evaluation, which can take minutes
    summary = evaluate_file(data, model_path, batch_size=batch_size, device=device, route=not no_route,
                            int8_dir=int8_dir)
    click.echo(format_table(summary))
    if "route" in summary:
        click.echo(format_route_table(summary["route"]))
    if json_path:
        with atomic_output(json_path, overwrite=overwrite) as temporary:
            temporary.write_text(json.dumps(summary, indent=2), encoding="utf-8")


def _parse_optional(parser, value: str | None, option: str):
    """Run a grid or extent parser on an option value, turning its error into one InputError line."""
    if value is None:
        return None
    try:
        return parser(value)
    except click.BadParameter as error:
        raise InputError(f"{option}: {error.message}") from None


@main.command()
@click.argument("pins_path", metavar="PINS", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Directory for routes.json, routes.gds and routes.png; other files in it are kept.")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Checkpoint [default: the shipped model].")
@click.option("--int8", "int8_dir", type=click.Path(), default=None,
              help="Integer model folder (model.json + model.npz) to route with instead of a checkpoint.")
@click.option("--grid", default=None,
              help="Grid of a CSV pins file in pixels: N or HxW, height x width [default: 32].")
@click.option("--extent-um", default=None,
              help="Physical grid size of a CSV pins file in µm: S or XxY [default: 11].")
@click.option("--gds-layers", default=None,
              help="GDS layer/datatype overrides, NAME=LAYER/DATATYPE,... such as M3=23/0,VIA3=43/0, or a JSON file.")
@click.option("--figure-nets", type=int, default=16, show_default=True, help="Nets drawn in routes.png, from the first.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Nets per inference batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace routes files already in --out.")
@click.option("--quiet", is_flag=True, help="No per-net lines, only the final summary.")
@_report_input_errors
def route(pins_path, out_dir, model_path, int8_dir, grid, extent_um, gds_layers, figure_nets, batch_size, device,
          overwrite, quiet):
    """Route every net of the pins file PINS (.json or .csv), repair and check it, and write
    the layouts to --out. A failure leaves --out as it was."""
    from deeproute.route import format_net_line, route_pins_file

    routed = route_pins_file(
        pins_path, out_dir, model_path=model_path, int8_dir=int8_dir,
        grid=_parse_optional(_parse_grid, grid, "--grid"),
        extent_um=_parse_optional(_parse_extent, extent_um, "--extent-um"),
        gds_layers=gds_layers, figure_nets=figure_nets, batch_size=batch_size, device=device, overwrite=overwrite,
    )
    if not quiet:
        name_width = max(len(item.net.name) for item in routed)
        for item in routed:
            click.echo(format_net_line(item, name_width))
    connected = sum(item.check.connected for item in routed)
    legal = sum(item.check.legal for item in routed)
    repaired = sum(item.repaired for item in routed)
    click.echo(
        f"{len(routed)} nets: {connected} connected, {legal} legal, {repaired} repaired; "
        f"wrote routes.json, routes.gds and routes.png to {out_dir}"
    )


def _parse_indices(values: tuple[str, ...]) -> list[int]:
    """Parse repeated or comma-separated --index values into sample numbers."""
    indices = []
    for value in values:
        for part in value.split(","):
            try:
                indices.append(int(part.strip()))
            except ValueError:
                raise InputError(f"--index: expected a sample number, got {part.strip()!r}") from None
    return indices


@main.command()
@click.argument("data", type=click.Path())
@click.option("--out", "out_path", required=True, type=click.Path(),
              help="Figure file; its extension .png, .svg or .pdf sets the format.")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Checkpoint whose prediction and errors are drawn [default: data and labels only].")
@click.option("--samples", type=int, default=9, show_default=True, help="Draw the first N samples.")
@click.option("--index", "indices", multiple=True,
              help="Sample number to draw, repeatable or comma-separated; replaces --samples.")
@click.option("--layers", "per_layer", is_flag=True, help="Add a row of per-layer panels under each sample.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace the figure file if it exists.")
@_report_input_errors
def visualize(data, out_path, model_path, samples, indices, per_layer, device, overwrite):
    """Draw samples of the dataset DATA: pins, label and, with --model, prediction and errors."""
    from deeproute.render import visualize_dataset

    drawn = visualize_dataset(
        data, out_path, model_path=model_path, samples=samples, indices=_parse_indices(indices),
        per_layer=per_layer, device=device, overwrite=overwrite,
    )
    click.echo(f"wrote {out_path} ({len(drawn)} samples)")


# Options of `quantize` that only TQT retraining reads.
RETRAINING_OPTIONS = ("epochs", "train_samples", "lr", "threshold_lr", "schedule", "distill", "seed", "device")


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(), help="Float checkpoint to quantize.")
@click.option("--calib", "calib_path", required=True, type=click.Path(), help="Calibration dataset (HDF5).")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Folder for model.npz, model.json, model.onnx and report.json.")
@click.option("--train", "train_path", type=click.Path(), default=None,
              help="Training dataset (HDF5); with it, TQT retrains weights and thresholds.")
@click.option("--val", "val_path", type=click.Path(), default=None,
              help="Validation dataset (HDF5); the report then compares float and integer F1 on it.")
@click.option("--epochs", type=int, default=None, help="TQT epochs [default: 3]; needs --train. The shipped W4A8 model took 6 epochs "
                   "of 50,000 nets with --distill 1.")
@click.option("--weight-bits", type=int, default=8, show_default=True,
              help="Weight bit width, 2-16; 4 gives W4A8. Below 8 bits, use --train: static calibration alone "
                   "loses most of the F1.")
@click.option("--calibration", type=click.Choice(["max", "percentile", "klj"]), default="max", show_default=True,
              help="Rule for the activation thresholds.")
@click.option("--weight-calibration", type=click.Choice(["max", "mse"]), default=None,
              help="Rule for the weight thresholds: max |w|, or the power of 2 with the least squared error "
                   "[default: mse below 8 weight bits, else max].")
@click.option("--percentile", type=float, default=99.99, show_default=True,
              help="Percentile of |x| used by --calibration percentile.")
@click.option("--calib-samples", type=int, default=2000, show_default=True,
              help="Use the first N samples of the calibration set; N must be at least --batch-size.")
@click.option("--train-samples", type=int, default=None, help="Use the first N training samples [default: all].")
@click.option("--val-samples", type=int, default=None, help="Use the first N validation samples [default: all].")
@click.option("--batch-size", type=int, default=100, show_default=True,
              help="Samples per batch in calibration, retraining and validation.")
@click.option("--lr", type=float, default=None,
              help="Adam learning rate of weights and biases [default: 1e-4 at 8 or more weight bits, else 3e-4].")
@click.option("--threshold-lr", type=float, default=1e-3,
              show_default=True, help="Adam learning rate of the log2 thresholds.")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True,
              help="TQT learning-rate schedule; cosine decays both rates to 0 over all steps.")
@click.option("--distill", type=float, default=0.0, show_default=True,
              help="Weight of distillation from the float model in TQT retraining: the loss adds this times "
                   "the KL divergence between float and quantized (off, on) probabilities.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the retraining sample order.")
@click.option("--device", default="auto", show_default=True, help="Device for retraining: auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an integer model already in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bars and no summary.")
@_report_input_errors
def quantize(model_path, calib_path, out_dir, train_path, val_path, epochs, weight_bits, calibration,
             weight_calibration, percentile, calib_samples, train_samples, val_samples, batch_size, lr,
             threshold_lr, schedule, distill, seed, device, overwrite, quiet):
    """Quantize a float checkpoint to integer arithmetic (TQT) and export it as npz/JSON and ONNX."""
    from deeproute.quant.pipeline import QuantizeConfig, quantize_checkpoint

    if val_samples is not None and val_path is None:
        raise InputError("--val-samples needs --val: it limits the validation set")
    if train_path is None:
        context = click.get_current_context()
        for name in RETRAINING_OPTIONS:
            if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                option = "--" + name.replace("_", "-")
                raise InputError(f"{option} needs --train: it sets TQT retraining, which runs only on a training set")
    config = QuantizeConfig(
        weight_bits=weight_bits, calibration=calibration, weight_calibration=weight_calibration,
        percentile=percentile, calib_samples=calib_samples, batch_size=batch_size,
        epochs=3 if epochs is None else epochs, train_samples=train_samples, val_samples=val_samples,
        lr=lr, threshold_lr=threshold_lr, schedule=schedule, distill=distill, seed=seed, device=device,
    )
    config.validate()
    if weight_bits < 8 and train_path is None:
        click.echo(
            f"warning: static quantization with {weight_bits}-bit weights usually loses most of the F1; "
            f"pass --train to retrain with TQT", err=True,
        )

    def report_epoch(record):
        if not quiet:
            validation = f"  val F1 {record['val']['f1']:.4f}" if "val" in record else ""
            click.echo(f"TQT epoch {record['epoch']:>2}  loss {record['train_loss']:.4f}{validation}")

    report = quantize_checkpoint(
        model_path, calib_path, out_dir, config, train_path=train_path, val_path=val_path,
        overwrite=overwrite, progress=_show_progress(quiet), on_epoch=report_epoch,
    )
    # Warnings go to stderr even with --quiet: the model was written but may be unusable.
    if report["clipped_biases_total"]:
        click.echo(
            f"warning: {report['clipped_biases_total']} biases exceed the int32 range and were clipped "
            f"(per stage: {report['clipped_biases']}); use fewer weight bits", err=True,
        )
    drop = report.get("validation", {}).get("f1_drop_points", 0.0)
    if drop > F1_DROP_WARNING_POINTS:
        click.echo(f"warning: the integer model's F1 is {drop:.2f} points below the float model's", err=True)
    if quiet:
        return
    click.echo(f"wrote model.npz, model.json, model.onnx and report.json to {out_dir} ({report['mode']})")
    if "validation" in report:
        validation = report["validation"]
        click.echo(
            f"F1 on {validation['samples']} validation samples: float {validation['float']['f1']:.4f}, "
            f"integer {validation['int8']['f1']:.4f} ({_describe_f1_change(validation['f1_drop_points'])})"
        )


F1_DROP_WARNING_POINTS = 5.0  # a larger loss of the integer model is printed as a warning


def _describe_f1_change(drop_points: float) -> str:
    """Describe an F1 drop in points as 'N points below float' or 'N points above float'."""
    rounded = round(drop_points, 2)
    if rounded == 0:
        return "the same as float to 0.01 points"
    return f"{abs(rounded):.2f} points {'below' if rounded > 0 else 'above'} float"
