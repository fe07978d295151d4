"""The ``depthkd`` command: each subcommand parses its arguments and calls one library function.

Errors the user can fix (:class:`depthkd.errors.DepthkdError`) print one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from depthkd import __version__
from depthkd.errors import ConfigError, DepthkdError

log = logging.getLogger("depthkd")

DATA_SPEC_HELP = (
    "data spec: nyu-mat:MAT?splits=SPLITS&split=test | nyu-list:LIST?root=DIR | "
    "kitti:LIST?root=DIR&gt_root=DIR&kb_crop=1 | folder:ROOT?depth_scale=1000 | "
    "sim:indoor?num=64&size=240x320&seed=0"
)
MODEL_SPEC_HELP = (
    "a student checkpoint (.safetensors) or a teacher spec: hf:DIR, onnx:FILE, torch:FILE, "
    "preds:DIR or a built-in teacher name"
)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``240x320``) into ``(H, W)``."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 240x320") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return height, width


# --- subcommands -------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from depthkd.sim.writer import write_dataset, write_preview

    if args.preview_only:
        path = write_preview(args.out, size=args.size, seed=args.seed)
        print(f"preview: {path}")
        return 0
    list_file = write_dataset(args.out, args.domain, args.num, args.size, seed=args.seed, preview=args.preview)
    print(f"wrote {args.num} {args.domain} images; list file: {list_file}")
    print(f"read it with --data 'nyu-list:{list_file}?root={args.out}'")
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


# --- parser ------------------------------------------------------------------------------------


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="render a synthetic RGB-D dataset (NYU list format) or a preview sheet",
        description="Render procedural RGB-D scenes: RGB PNGs, 16-bit depth PNGs (mm), instance PNGs "
        "and a list file readable with --data nyu-list:LIST?root=DIR.",
    )
    p.add_argument("--domain", default="indoor", help="indoor, outdoor or an out-of-distribution domain")
    p.add_argument("--num", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--size", type=parse_size, default=(240, 320), help="HxW (default 240x320)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--preview", action="store_true", help="also write a contact sheet of every domain")
    p.add_argument("--preview-only", action="store_true", help="only write the contact sheet")
    p.set_defaults(func=cmd_simulate)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify-data",
        help="check a dataset: counts, missing files, decoding, value ranges",
        description="Check a dataset against its official counts (NYU test 654; KITTI Eigen test 697 "
        "lines / 652 with ground truth), list missing files and decode every item.",
    )
    p.add_argument("data", help=DATA_SPEC_HELP)
    p.add_argument("--expected", type=int, default=None, help="expected number of items")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist")
    p.set_defaults(func=cmd_verify_data)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from depthkd.metrics import ALIGNMENTS, PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="score a model or saved predictions under a named protocol",
        description="Per-image metrics (abs_rel, sq_rel, rmse, rmse_log, log10, silog, d1-d3), averaged "
        "over images, under a named protocol (crop and depth caps) and alignment.",
    )
    p.add_argument("--model", help=MODEL_SPEC_HELP)
    p.add_argument("--predictions", help="a folder of saved predictions (DIR/<name>.png|.npy, meta.json)")
    p.add_argument("--data", required=True, help=DATA_SPEC_HELP)
    p.add_argument("--protocol", default="nyu", choices=sorted(PROTOCOLS), help="default nyu")
    p.add_argument("--align", default="none", choices=ALIGNMENTS, help="default none (metric)")
    p.add_argument("--flip-tta", action="store_true", help="average with the flipped image's prediction")
    p.add_argument("--min-depth", type=float, default=None, help="override the protocol's lower cap")
    p.add_argument("--max-depth", type=float, default=None, help="override the protocol's upper cap")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="write the result as JSON here")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="write depth PNGs (16-bit) and colour maps for a folder of images",
        description="Predict depth for every image below --input; writes OUT/<name>.png (uint16, depth * "
        "scale), OUT/colormap/<name>.png and OUT/meta.json.",
    )
    p.add_argument("--model", required=True, help=MODEL_SPEC_HELP)
    p.add_argument("--input", required=True, help="folder of images")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--scale", type=float, default=1000.0, help="16-bit PNG scale (1000 = mm; 256 = KITTI)")
    p.add_argument("--format", default="png", choices=("png", "npy"))
    p.add_argument("--flip-tta", action="store_true")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_simulate,
    _add_verify,
    _add_evaluate,
    _add_predict,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthkd",
        description="Distil large monocular depth models into small, fast CNN students; evaluate them "
        "under the field's exact protocols; export them.",
    )
    parser.add_argument("--version", action="version", version=f"depthkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    except KeyboardInterrupt:
        print(f"depthkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
