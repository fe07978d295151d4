"""The ``depthkd`` command: each subcommand parses its arguments and calls one library function.

Errors the user can fix (:class:`depthkd.errors.DepthkdError`) print one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from depthkd import __version__
from depthkd.errors import ConfigError, DepthkdError

log = logging.getLogger("depthkd")

DATA_SPEC_HELP = (
    "data spec: nyu-mat:MAT?splits=SPLITS&split=test | nyu-list:LIST?root=DIR | "
    "kitti:LIST?root=DIR&gt_root=DIR&kb_crop=1 | folder:ROOT?depth_scale=1000 | "
    "sim:indoor?num=64&size=240x320&seed=0; any scheme with depth also takes labels=N or a fraction "
    "(e.g. labels=0.05; only those items keep their depth) and labels_seed=S"
)
MODEL_SPEC_HELP = (
    "a student checkpoint (.safetensors), an exported .onnx, or a teacher spec: hf:DIR, onnx:FILE, "
    "torch:FILE, preds:DIR or a built-in teacher name"
)
DEVICE_HELP = "where the model runs: cpu, cuda, cuda:N or mps"

# --- static copies of library constants --------------------------------------------------------
# Building the parser must import nothing heavy (``depthkd --help`` took seconds when it imported torch via
# depthkd.metrics, depthkd.comparison and depthkd.demo); tests/cli/test_help.py checks these against the library.

PROTOCOL_NAMES: tuple[str, ...] = (
    "kitti_eigen", "kitti_garg", "none", "nyu", "sim_indoor", "sim_outdoor", "sim_outdoor_garg",
)
"""``depthkd.metrics.PROTOCOLS``' names."""
ALIGNMENT_NAMES: tuple[str, ...] = ("none", "median", "lstsq", "lstsq_disparity")
"""``depthkd.metrics.ALIGNMENTS``."""
DEMO_SETTINGS: dict[str, str] = {
    "kitti-like": "the LiDAR measures about 4% of the pixels and nothing above its top beam; the teacher "
    "predicts every one",
    "nyu-like": "the Kinect-like sensor measures about 85% of the pixels, with holes at edges, far walls and dark "
    "surfaces; the teacher fills them",
    "label-scarce": "only 5% of the images have depth at all; the teacher labels every image",
}
"""``depthkd.comparison.SETTINGS``: each world's name and why a teacher should pay there."""
DEMO_DEFAULT_SETTING = "label-scarce"
"""``depthkd.demo.DEFAULT_SETTING``."""
DEMO_METHOD_NAMES: tuple[str, ...] = ("tie-kd", "tie-kd-gt", "response", "feature", "disdepth")
"""``depthkd.demo.DEMO_METHODS``' names."""
DEMO_DEFAULT_METHODS: dict[str, str] = {"kitti-like": "tie-kd", "nyu-like": "tie-kd", "label-scarce": "tie-kd-gt"}
"""``depthkd.demo.DEFAULT_METHODS``."""
DEMO_DEFAULT_STEPS: tuple[int, int] = (1800, 100)
"""Student steps of the default setting's ``full`` and ``quick`` budgets (``depthkd.demo.BUDGETS``)."""


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to every option whose default means something, so no help hides what it does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == []:
            return text  # nothing to show (a flag, an optional value, an empty repeatable option)
        if "%(default)" in text or "(default" in text:
            return text
        return f"{text} (default: {_show_default(default).replace('%', '%%')})"


def _show_default(value: object) -> str:
    """A default as a user would type it: ``240x320`` for a size, ``1000`` for ``1000.0``."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows every option's default (subcommands inherit it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


# --- argument types: a bad value is a usage error (exit 2) before any command starts ---------------


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``240x320``) into positive ``(H, W)``, as an argparse type.

    The rule of :func:`depthkd.data.spec.parse_size`, written here so that parsing imports no torch.
    """
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 240x320") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return height, width


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers ``>= minimum`` (a count of 0 or -1 would only fail later, or loop on)."""
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """An argparse type for finite numbers ``> 0`` (widths, scales, depth caps)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def parse_pixel(text: str) -> tuple[int, int]:
    """Parse ``ROW,COL`` into a non-negative pixel position."""
    try:
        row, col = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"pixel {text!r} is not ROW,COL, e.g. 120,160") from None
    if row < 0 or col < 0:
        raise argparse.ArgumentTypeError(f"pixel {text!r}: ROW and COL must be non-negative")
    return row, col


# --- subcommands -------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from depthkd.sim.writer import write_dataset, write_preview

    if args.preview_only:
        out = Path(args.out)
        path = write_preview(out if out.suffix.lower() == ".png" else out / "preview.png", size=args.size,
                             seed=args.seed)
        print(f"preview: {path}")
        return 0
    list_file = write_dataset(args.out, args.domain, args.num, args.size, seed=args.seed, preview=args.preview,
                              gt=args.gt, overwrite=args.overwrite)
    scale = json.loads((Path(args.out) / "meta.json").read_text()).get("depth_scale", 1000.0)
    print(f"wrote {args.num} {args.domain} images; list file: {list_file}")
    print(f"read it with --data 'nyu-list:{list_file}?root={args.out}&depth_scale={scale:g}'")
    return 0


def cmd_verify_data(args: argparse.Namespace) -> int:
    from depthkd.data.verify import verify_dataset

    report = verify_dataset(args.data, expected=args.expected, decode=not args.no_decode)
    print(report.to_text())
    return 0 if report.ok else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from depthkd.evaluate import evaluate

    if (args.model is None) == (args.predictions is None):
        raise ConfigError("give exactly one of --model and --predictions")
    model = args.model if args.model is not None else f"preds:{args.predictions}"
    result = evaluate(
        model,
        args.data,
        protocol=args.protocol,
        align=args.align,
        flip_tta=args.flip_tta,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        output=args.output,
        align_corners=args.align_corners,
    )
    print(result.table())
    if args.output:
        print(f"\nwrote {args.output}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from depthkd.predict import predict_folder

    summary = predict_folder(
        args.model,
        args.input,
        args.output,
        scale=args.scale,
        flip_tta=args.flip_tta,
        device=args.device,
        fmt=args.format,
    )
    print(f"wrote {summary.count} predictions ({summary.kind}) to {summary.output_dir}")
    return 0


def _print_run(result) -> None:  # noqa: ANN001 - engine.RunResult
    from depthkd.metrics import metrics_table

    print(f"run directory: {result.run_dir}")
    if result.student_path:
        print(f"student: {result.student_path}")
    if result.metrics:
        print(f"\nvalidation ({result.protocol})")
        rows = [("student", result.metrics)]
        if result.teacher_metrics:
            rows.append(("teacher", result.teacher_metrics))
        print("\n".join(metrics_table(rows, name_column="model")))
    if result.skipped_batches:
        print(f"skipped batches (non-finite loss): {result.skipped_batches}")


def cmd_train(args: argparse.Namespace) -> int:
    from depthkd.engine import load_recipe, train

    _print_run(train(load_recipe(args.config, args.set)))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from depthkd.engine import distill, load_recipe

    _print_run(distill(load_recipe(args.config, args.set)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from depthkd.demo import run_demo

    command = "depthkd demo " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "depthkd demo"
    report = run_demo(
        out=args.out, quick=args.quick, method=args.method, student=args.student, steps=args.steps,
        seed=args.seed, teacher=args.teacher, command=command.strip(), setting=args.setting,
    )
    print(report.read_text())
    print(f"report: {report} (pictures beside it: samples.png, curves.png)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from depthkd.inspect_model import format_inspection, inspect_model

    rows = inspect_model(args.model, size=args.size, device=args.device)
    print(format_inspection([row for row in rows if args.filter in row.name]))
    return 0


def cmd_cache_teacher(args: argparse.Namespace) -> int:
    from depthkd.data import dataset_from_spec
    from depthkd.data.cache import build_teacher_cache
    from depthkd.models.teachers import load_teacher

    teacher = load_teacher(args.teacher, device=args.device)
    cache = build_teacher_cache(
        teacher, dataset_from_spec(args.data), args.out, batch_size=args.batch_size, device=args.device,
        fmt=args.format,
    )
    print(f"cached {len(cache.names)} {cache.kind} maps of {args.teacher} in {args.out}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from depthkd.explain import explain

    path = explain(
        args.model, args.image, teacher=args.teacher, pixels=args.pixel or None, output=args.output,
        sigma=args.sigma, target=args.target, entropy=args.entropy, size=args.size, device=args.device,
    )
    print(f"wrote {path}")
    return 0


def cmd_preview_datafree(args: argparse.Namespace) -> int:
    from depthkd.config import parse_override
    from depthkd.preview_datafree import preview_datafree

    options = {}
    for text in args.option:
        keys, value = parse_override(text)
        options[".".join(keys)] = value
    preview = preview_datafree(
        args.output, args.data, num_images=args.num_images, run=args.run, teacher=args.teacher,
        fit_steps=args.fit_steps, options=options or None, seed=args.seed, device=args.device,
    )
    print(f"wrote {preview.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from depthkd.export import export_onnx

    if args.calib and not args.int8:
        raise ConfigError("--calib is for static int8 calibration: add --int8")
    output = args.output or str(Path(args.model).with_suffix(".onnx"))
    report = export_onnx(
        args.model, output, size=args.size, dynamic=args.dynamic, fp16=args.fp16,
        preprocessing=args.preprocessing, input_format=args.input_format, opset=args.opset,
        int8=args.int8,
        calib=args.calib, exporter=args.exporter,
    )
    print(report.to_markdown())
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from depthkd.latency import benchmark

    report = benchmark(
        args.model, teacher=args.teacher, size=args.size, backend=args.backend, threads=args.threads,
        warmup=args.warmup, iters=args.iters, batch=args.batch,
    )
    print(report.to_markdown())
    return 0


# --- parser ------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    full_steps, quick_steps = DEMO_DEFAULT_STEPS
    p = sub.add_parser(
        "demo",
        help="distil a built-in teacher into a MobileNetV2 where labels are scarce, and write a report",
        description="The realistic case end to end: simulated rooms of which only 5% have (Kinect-like) depth "
        "(the label-scarce setting; --setting picks another), a MobileNetV2 trained alone on the labelled images "
        "and with a distillation method from the dense built-in teacher on all of them under the same budget, "
        "all three scored on a fixed test set "
        "of exact depth, the distilled student exported to ONNX and timed against the teacher; writes "
        "report.md, samples.png and curves.png. Needs nothing but the installed package: under 15 minutes on "
        f"2 CPU cores ({full_steps} steps per student), --quick under 3 ({quick_steps} steps).",
    )
    p.add_argument("--out", default="demo-report", help="report folder")
    p.add_argument("--setting", default=DEMO_DEFAULT_SETTING, choices=list(DEMO_SETTINGS),
                   help=f"the world (default {DEMO_DEFAULT_SETTING}): " + "; ".join(
                       f"{name}: {why}" for name, why in DEMO_SETTINGS.items()).replace("%", "%%"))
    p.add_argument("--quick", action="store_true", help="a smaller budget, to see it work in a couple of minutes")
    p.add_argument("--method", default=None, choices=list(DEMO_METHOD_NAMES),
                   help="distillation method (default: the setting's, "
                        + ", ".join(f"{k}: {v}" for k, v in DEMO_DEFAULT_METHODS.items())
                        + "; tie-kd is TIE-KD from the teacher alone, as its paper runs it, tie-kd-gt adds the labels)")
    p.add_argument("--student", default="mobilenetv2_100", help="timm backbone of the student")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="training steps per student (default: the setting's budget)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the order")
    p.add_argument("--teacher", default=None, help="teacher spec (default: the setting's built-in teacher)")
    p.set_defaults(func=cmd_demo)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="render a synthetic RGB-D dataset (NYU list format) or a preview sheet",
        description="Render procedural RGB-D scenes: RGB PNGs, 16-bit depth PNGs (mm), instance PNGs "
        "and a list file readable with --data nyu-list:LIST?root=DIR.",
    )
    p.add_argument("--domain", default="indoor", help="indoor, outdoor or an out-of-distribution domain")
    p.add_argument("--num", type=positive_int, default=100, help="number of images")
    p.add_argument("--size", type=parse_size, default=(240, 320), help="image size HxW")
    p.add_argument("--seed", type=int, default=0, help="scene seed: the same seed gives the same bytes")
    p.add_argument("--out", required=True,
                   help="output folder (with --preview-only: a folder for preview.png, or a .png file name)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset already in --out (default: refuse, so nothing is mixed or lost)")
    p.add_argument("--gt", default="dense",
                   help="ground truth written to depth/: dense (exact), lidar or lidar_annotated "
                        "(KITTI-like scan, outdoor), kinect or kinect_filled (NYU-like structured light, indoor); "
                        "with a sensor the exact depth goes to depth_dense/")
    p.add_argument("--preview", action="store_true", help="also write a contact sheet of every domain")
    p.add_argument("--preview-only", action="store_true", help="only write the contact sheet")
    p.set_defaults(func=cmd_simulate)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify-data",
        help="check a dataset: counts, missing files, decoding, value ranges",
        description="Check a dataset against its official counts (NYU test 654; KITTI Eigen test 697 "
        "lines / 652 with ground truth), list missing files and decode every item. A spec with labels= "
        "also reports how many items keep their depth (labelled) and how many do not.",
    )
    p.add_argument("data", help=DATA_SPEC_HELP)
    p.add_argument("--expected", type=non_negative_int, default=None,
                   help="expected number of items (default: the official count where one is known)")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist")
    p.set_defaults(func=cmd_verify_data)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model or saved predictions under a named protocol",
        description="Per-image metrics (abs_rel, sq_rel, rmse, rmse_log, log10, silog, d1-d3), averaged "
        "over images, under a named protocol (crop and depth caps) and alignment.",
    )
    p.add_argument("--model", help=MODEL_SPEC_HELP)
    p.add_argument("--predictions", help="a folder of saved predictions (DIR/<name>.png|.npy, meta.json)")
    p.add_argument("--data", required=True, help=DATA_SPEC_HELP)
    p.add_argument("--protocol", default="nyu", choices=sorted(PROTOCOL_NAMES),
                   help="metric protocol: crop and depth caps")
    p.add_argument("--align", default="none", choices=ALIGNMENT_NAMES,
                   help="alignment of each prediction to its ground truth before scoring; none scores metric depth")
    p.add_argument("--flip-tta", action="store_true", help="average with the flipped image's prediction")
    p.add_argument("--align-corners", action="store_true",
                   help="resize predictions of another size than the ground truth with align_corners=True, as "
                   "ZoeDepth and AdaBins evaluate (default: False, as Hugging Face and monodepth2); the label says so")
    p.add_argument("--min-depth", type=positive_float, default=None,
                   help="lower depth cap in metres (default: the protocol's)")
    p.add_argument("--max-depth", type=positive_float, default=None,
                   help="upper depth cap in metres (default: the protocol's)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass")
    p.add_argument("--num-workers", type=non_negative_int, default=0,
                   help="DataLoader worker processes; 0 loads in the main process")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--output", help="write the result as JSON here (default: only print the table)")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="write depth PNGs (16-bit) and colour maps for a folder of images",
        description="Predict depth for every image below --input; writes OUT/<name>.png (uint16, depth * "
        "scale), OUT/colormap/<name>.png and OUT/meta.json.",
    )
    p.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    p.add_argument("--input", required=True,
                   help="a folder of images (a paired dataset's root: its rgb/), or a data spec such as "
                   "nyu-list:LIST?root=DIR, whose images are then named as evaluate --predictions looks them up")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--scale", type=positive_float, default=1000.0,
                   help="16-bit PNG units per metre (1000 = mm; 256 = KITTI)")
    p.add_argument("--format", default="png", choices=("png", "npy"),
                   help="png: 16-bit depth * --scale (metric models only); npy: float32, any output kind, lossless")
    p.add_argument("--flip-tta", action="store_true", help="average with the flipped image's prediction")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.set_defaults(func=cmd_predict)


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="recipe YAML, a path or a packaged recipe's name (e.g. configs/tiekd-sim.yaml, tiekd-sim)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.lr=3e-4 --set trainer.max_steps=500 (repeatable)",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a student (or a teacher) on ground truth from a recipe",
        description="Supervised training from a recipe: checkpoints, resume (run.resume: auto), periodic "
        "validation under the recipe's protocol, and the trained model exported as student.safetensors.",
    )
    _add_recipe_args(p)
    p.set_defaults(func=cmd_train)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="distil a teacher into a student with the recipe's method",
        description="Knowledge distillation from a recipe (methods: supervised, response, feature, tie-kd, "
        "disdepth, data-free); validation shows the teacher's score beside the student's.",
    )
    _add_recipe_args(p)
    p.set_defaults(func=cmd_distill)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="list a model's module names and output shapes (hook points for feature KD)",
        description="Run one image through a student or teacher and list every module with its output shape.",
    )
    p.add_argument("model", help="student:BACKBONE, a student .safetensors, hf:DIR or torch:FILE")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="input size HxW")
    p.add_argument("--filter", default="", help="only modules whose name contains this text (default: all)")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.set_defaults(func=cmd_inspect)


def _add_cache_teacher(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache-teacher",
        help="run a teacher once over a dataset and store its depth maps",
        description="Store the teacher's output per image (fp16 memory-mapped or 16-bit PNG), keyed by image "
        "name, teacher identity and preprocessing; distill reuses it when cache.enabled is set.",
    )
    p.add_argument("--teacher", required=True, help=MODEL_SPEC_HELP)
    p.add_argument("--data", required=True, help=DATA_SPEC_HELP)
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--format", default="npy16", choices=("npy16", "png16"),
                   help="npy16: fp16 memory-mapped arrays; png16: one 16-bit PNG per image")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per teacher forward pass")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.set_defaults(func=cmd_cache_teacher)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="figure of a DPM student's depth, uncertainty and per-pixel depth distributions",
        description="For a student with the dpm head (TIE-KD): the image, its depth, the entropy of the "
        "per-pixel depth distribution (uncertainty), and for chosen pixels the teacher's and student's "
        "distributions over depth.",
    )
    p.add_argument("--model", required=True, help="a student .safetensors with the dpm head")
    p.add_argument("--image", required=True, help="an image file")
    p.add_argument("--teacher", help=MODEL_SPEC_HELP + " (default: none; adds the teacher's depth and DPM)")
    p.add_argument("--output", default="explain.png", help="the PNG to write")
    p.add_argument("--pixel", type=parse_pixel, action="append",
                   help="ROW,COL of an input pixel to show (repeatable; default: the most uncertain, the most "
                        "certain and the centre)")
    p.add_argument("--size", type=parse_size, default=None, help="resize the image to HxW first (default: keep it)")
    p.add_argument("--sigma", type=positive_float, default=None,
                   help="teacher DPM width in metres, > 0 (default: TIE-KD's for the student's depth range)")
    p.add_argument("--target", default="integrated", choices=("integrated", "softmax_pdf"),
                   help="the teacher DPM's form, as in training")
    p.add_argument("--entropy", default="normalized", choices=("normalized", "nats"),
                   help="entropy units: normalized (divided by ln K, comparable across bin counts) or nats")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.set_defaults(func=cmd_explain)


def _add_preview_datafree(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preview-datafree",
        help="grid of raw OOD images, mixed images and transformed images (data-free KD)",
        description="Show what a data-free student learns from: raw out-of-distribution images, after "
        "object-wise mixing, and after the transformation network.",
    )
    p.add_argument("--data", required=True, help=DATA_SPEC_HELP)
    p.add_argument("--output", required=True, help="PNG to write")
    p.add_argument("--run", help="a data-free run directory (its trained transformation network)")
    p.add_argument("--teacher", help="teacher spec (default: the run's)")
    p.add_argument("--fit-steps", type=non_negative_int, default=0,
                   help="without --run, fit a transformation network for N steps; 0 fits none")
    p.add_argument("--num-images", type=int_at_least(2), default=6,
                   help="columns of the grid (at least 2: objects are mixed between images)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a data-free method option (mixing, transformation network) when no --run is given "
                        "(repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixing and of a fitted network")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.set_defaults(func=cmd_preview_datafree)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a student to ONNX and check parity with PyTorch (optionally fp16 / int8)",
        description="Export to ONNX (input 'image', output 'depth'), then always: onnx.checker, an "
        "onnxruntime run, max |ONNX - PyTorch| and metric parity on simulated images. A mismatch beyond "
        "tolerance is an error and the files are removed.",
    )
    p.add_argument("--model", required=True, help="a student .safetensors (or student:BACKBONE, arch:NAME)")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    p.add_argument("--output", help="the .onnx path (default: next to the model)")
    p.add_argument("--size", type=parse_size, default=(480, 640),
                   help="input size HxW (with --dynamic: the traced size)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--fp16", action="store_true", help="float16 weights and activations")
    p.add_argument(
        "--int8", nargs="?", const="static", choices=("static", "dynamic"),
        help="also write NAME.int8.onnx (static calibration by default) and report the accuracy change",
    )
    p.add_argument("--calib", help="folder of calibration images for static int8 (default: simulated)")
    p.add_argument("--preprocessing", default="inside", choices=("inside", "sidecar"),
                   help="inside: the graph normalises the image; sidecar: the caller does, with the mean/std "
                        "written to the sidecar NAME.json")
    p.add_argument("--input-format", default="float", choices=("float", "uint8"),
                   help="float: (B,3,H,W) float32 in [0,1]; uint8: (B,H,W,3) bytes (needs --preprocessing inside)")
    p.add_argument("--opset", type=int_at_least(17), default=18, help="ONNX opset, 17 or newer")
    p.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"),
                   help="dynamo: torch.export, handles every model, slower; legacy: TorchScript, quicker, "
                        "a fallback when a model trips torch.export")
    p.set_defaults(func=cmd_export)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="latency p50/p90, throughput, peak memory, params and MACs (student vs teacher)",
        description="Time a model after warm-up; with --teacher, a ratio table. Teacher architectures need "
        "no weights: arch:depth-anything-v2-small | arch:depth-anything-v2-base | arch:dpt-hybrid.",
    )
    p.add_argument("--model", required=True, help="student .safetensors, .onnx, student:BACKBONE or a teacher spec")
    p.add_argument("--teacher", help="a teacher spec or arch:NAME to compare with (default: none)")
    p.add_argument("--size", type=parse_size, default=(480, 640), help="input size HxW")
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"),
                   help="runtime timed (PyTorch models are exported to a temporary ONNX graph for onnxruntime)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads of the backend")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls before timing")
    p.add_argument("--iters", type=positive_int, default=20, help="timed calls")
    p.add_argument("--batch", type=positive_int, default=1, help="images per call")
    p.set_defaults(func=cmd_benchmark)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_simulate,
    _add_verify,
    _add_evaluate,
    _add_predict,
    _add_train,
    _add_distill,
    _add_inspect,
    _add_cache_teacher,
    _add_explain,
    _add_preview_datafree,
    _add_export,
    _add_benchmark,
]


def build_parser() -> argparse.ArgumentParser:
    """The whole ``depthkd`` parser; builds without importing torch, so help and usage errors are instant."""
    parser = _Parser(
        prog="depthkd",
        description="Distil large monocular depth models into small, fast CNN students; evaluate them "
        "under the field's exact protocols; export them.",
    )
    parser.add_argument("--version", action="version", version=f"depthkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # subparsers are _Parser too
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=True)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except DepthkdError as exc:
        print(f"depthkd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk, an --out that is a file: one line, no traceback
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"depthkd {args.command}: error: {where}{exc.strerror or exc} (-v shows where)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a training run says where it saved its checkpoint
        print(f"depthkd {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
