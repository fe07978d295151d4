"""Writing simulated data to disk: an image/depth/instance folder with a list file, and contact sheets.

``write_dataset`` lays files out like the depth codebases expect::

    out_dir/rgb/000000.png        8-bit RGB
    out_dir/depth/000000.png      16-bit depth, value / depth_scale = metres, 0 = invalid (with gt=lidar
                                  or kinect: the sensor's measurements, 0 = none)
    out_dir/depth_dense/000000.png  the exact depth beside a sensor's (only with a sensor gt)
    out_dir/instances/000000.png  16-bit instance ids (0 = walls, floor, road, sky, ...)
    out_dir/classes/000000.png    16-bit class ids (names in meta.json)
    out_dir/list.txt              "<rgb> <depth> <focal>" per line, paths relative to out_dir
    out_dir/meta.json             domain, seed, size, depth_scale, protocol, class names, intrinsics

Depth is stored in millimetres (NYU convention, read with ``NYUv2List(list, data_root=out_dir)``)
unless the domain's depth exceeds what 16-bit millimetres hold (65.5 m): ``outdoor`` is then stored
as value / 256 like KITTI's ground truth (read with the KITTI list reader).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from PIL import Image, ImageDraw, ImageFont

from depthkd.errors import ConfigError
from depthkd.io import colorize_depth, plane, write_depth_png, write_label_png, write_rgb
from depthkd.progress import track
from depthkd.sim.domains import DOMAINS, check_ground_truth, get_domain
from depthkd.sim.render import DEFAULT_SIZE, check_size, render_batch
from depthkd.sim.scene import CLASS_NAMES

log = logging.getLogger(__name__)

UINT16_MAX = 65535


def default_depth_scale(domain: str) -> float:
    """1000 (millimetres) when the domain's depth fits 16 bits that way, else 256 (KITTI)."""
    return 1000.0 if get_domain(domain).max_depth * 1000.0 <= UINT16_MAX else 256.0


def _images(domain: str, num: int, size: tuple[int, int], seed: int, batch_size: int,
            device: torch.device | str, gt: str = "dense") -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Rendered images one at a time (rendered ``batch_size`` at once)."""
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        batch = render_batch(domain, count, size, seed, device, start=start, gt=gt)
        for i in range(count):
            yield start + i, {key: value[i].cpu() for key, value in batch.items()}


def write_dataset(
    out_dir: str | Path,
    domain: str,
    num: int,
    size: tuple[int, int],
    seed: int = 0,
    preview: bool = False,
    *,
    depth_scale: float | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    gt: str = "dense",
    overwrite: bool = False,
) -> Path:
    """Render ``num`` images of ``domain`` into ``out_dir`` (layout in the module docstring).

    Returns the path of ``list.txt``. ``preview=True`` also writes ``preview.png`` of the first
    images. ``depth_scale`` defaults to :func:`default_depth_scale`; depth that does not fit 16 bits
    at the chosen scale is written as 0 (invalid) and counted in a warning. ``gt`` picks the ground
    truth written to ``depth/`` (:mod:`depthkd.sim.groundtruth`; it must fit the domain). A folder that
    already holds a dataset is refused unless ``overwrite``, which first removes the files of this
    layout (and nothing else), so old and new images never mix.
    """
    info = get_domain(domain)
    check_ground_truth(gt, domain)
    height, width = check_size(size)
    if int(num) < 1:
        raise ConfigError(f"num must be >= 1, got {num}")
    scale = float(depth_scale or default_depth_scale(domain))
    out = Path(out_dir)
    _clear_previous(out, overwrite)
    depth_folders = ("depth",) if gt == "dense" else ("depth", "depth_dense")
    for folder in ("rgb", *depth_folders, "instances", "classes"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    list_file = out / "list.txt"
    try:
        intrinsics, clipped = _write_items(out, domain, int(num), (height, width), seed, batch_size, device, gt,
                                           scale, lines)
        meta = {
            "domain": domain,
            "seed": seed,
            "num": int(num),
            "size": [height, width],
            "depth_scale": scale,
            "gt": gt,
            "depth_range": [info.min_depth, info.max_depth],
            "protocol": info.protocol,
            "class_names": list(CLASS_NAMES),
            "intrinsics": intrinsics,
        }
        list_file.write_text("\n".join(lines) + "\n")
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    except OSError as err:  # a full disk part way: no list.txt, and say what the folder now holds
        for name in ("list.txt", "meta.json"):
            (out / name).unlink(missing_ok=True)
        raise OSError(err.errno, f"{err.strerror or err}, after {len(lines)} of {num} images: {out} holds a "
                      "partial dataset (no list.txt); free the space, then rerun with --overwrite",
                      err.filename) from err
    if clipped:
        log.warning("%d depth pixels beyond %.1f m did not fit 16 bits at scale %g and were written as 0",
                    clipped, UINT16_MAX / scale, scale)
    if preview:
        write_preview(out / "preview.png", domains=(domain,), n=min(4, int(num)), size=(height, width), seed=seed,
                      device=device)
    log.info("wrote %d %s images to %s", num, domain, out)
    return list_file


def _write_items(out: Path, domain: str, num: int, size: tuple[int, int], seed: int, batch_size: int,
                 device: torch.device | str, gt: str, scale: float,
                 lines: list[str]) -> tuple[dict[str, list[float]], int]:
    """Write each item's files; append its ``list.txt`` line to ``lines`` once they are on disk.

    Returns the intrinsics per item name and the count of depth pixels too far for 16 bits.
    """
    depth_folders = ("depth",) if gt == "dense" else ("depth", "depth_dense")
    intrinsics: dict[str, list[float]] = {}
    clipped = 0
    images = _images(domain, num, size, seed, batch_size, device, gt)
    for index, item in track(images, f"simulate {domain}" + ("" if gt == "dense" else f" (gt={gt})"), total=num):
        name = f"{index:06d}"
        write_rgb(out / "rgb" / f"{name}.png", item["image"])
        for folder, key in zip(depth_folders, ("depth", "dense_depth")):
            depth = item[key]
            too_far = depth * scale > UINT16_MAX
            clipped += int(too_far.sum())
            write_depth_png(out / folder / f"{name}.png", torch.where(too_far, 0.0, depth), scale=scale)
        write_label_png(out / "instances" / f"{name}.png", item["instances"][0])
        write_label_png(out / "classes" / f"{name}.png", item["classes"][0])
        fx, fy, cx, cy = (float(v) for v in item["intrinsics"])
        intrinsics[name] = [fx, fy, cx, cy]
        lines.append(f"rgb/{name}.png depth/{name}.png {fx:.4f}")
    return intrinsics, clipped


#: What :func:`write_dataset` writes into its folder (and ``overwrite`` removes before writing).
DATASET_FOLDERS = ("rgb", "depth", "depth_dense", "instances", "classes")
DATASET_FILES = ("list.txt", "meta.json", "preview.png")


def _clear_previous(out: Path, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, clear) a folder that already holds a written dataset."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder for the dataset")
    present = [name for name in (*DATASET_FOLDERS, *DATASET_FILES) if (out / name).exists()]
    if not present:
        return
    if not overwrite:
        raise ConfigError(f"{out} already holds a dataset ({', '.join(present)}); pass --overwrite "
                          "(overwrite=True) to replace it, or choose another folder")
    for name in present:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    log.info("removed the previous dataset in %s", out)


def colorize_instances(instances: torch.Tensor | np.ndarray) -> np.ndarray:
    """Instance ids ``(H, W)`` to ``(H, W, 3)`` uint8: a fixed random colour per id, 0 dark grey."""
    ids = plane(instances.cpu().numpy() if isinstance(instances, torch.Tensor) else np.asarray(instances))
    palette = np.random.default_rng(7).integers(60, 256, size=(int(ids.max()) + 1, 3), dtype=np.uint8)
    palette[0] = 40
    return palette[ids]


def _preview_sensor(domain: str) -> str | None:
    """The sensor of the preview's sensor column for ``domain`` (None: the domain has none)."""
    sensors = [gt for gt in get_domain(domain).ground_truths if gt in ("lidar", "kinect")]
    return sensors[0] if sensors else None


PREVIEW_COLUMNS = ("RGB", "exact depth", "sensor depth", "instances")


def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (older Pillow: its fixed small bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def write_preview(
    out_path: str | Path,
    domains: Sequence[str] = DOMAINS,
    n: int = 4,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Path:
    """Contact sheet PNG: per domain, ``n`` rows of RGB | exact depth (turbo, near = red) | the domain's
    sensor (``lidar`` or ``kinect``, same colours; grey = no measurement, blank for domains without
    one) | instances, under a header naming the columns, with a colour bar (each row's range is in its
    label) and what black and grey mean."""
    height, width = check_size(size)
    label_h, gap, header_h = 18, 4, 56
    columns = len(PREVIEW_COLUMNS)
    header = np.full((header_h, columns * width + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None].repeat(8, axis=0) + 1e-3
    for column in (1, 2):  # a colour bar over both depth columns: near (red) to far (blue) within each row's range
        header[22:30, column * (width + gap) : column * (width + gap) + width] = colorize_depth(ramp, 0.0, 1.0)
    rows: list[np.ndarray] = [header]
    labels: list[tuple[int, str]] = []
    y = header_h
    for domain in track(list(domains), "preview"):
        sensor = _preview_sensor(domain)
        batch = render_batch(domain, n, (height, width), seed, device, gt=sensor or "dense")
        exact = batch.get("dense_depth", batch["depth"])
        for i in range(n):
            depth = exact[i, 0]
            valid = depth[depth > 0]
            low, high = (float(valid.min()), float(valid.max())) if valid.numel() else (0.0, 1.0)
            blank = np.full((height, width, 3), 255, dtype=np.uint8)
            if sensor is not None:
                measured = batch["depth"][i, 0]
                blank = np.where((measured > 0).numpy()[..., None], colorize_depth(measured, low, high), 128).astype(np.uint8)
            tiles = [
                (batch["image"][i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8),
                colorize_depth(depth, low, high),
                blank,
                colorize_instances(batch["instances"][i, 0]),
            ]
            row = np.full((height + label_h, columns * width + (columns - 1) * gap, 3), 255, dtype=np.uint8)
            for column, tile in enumerate(tiles):
                row[label_h:, column * (width + gap) : column * (width + gap) + width] = tile
            coverage = f"  {sensor} {float((batch['depth'][i] > 0).float().mean()):.1%} of pixels" if sensor else ""
            labels.append((y, f"{domain} #{i}  depth {low:.2f}-{high:.2f} m  "
                              f"{int(batch['instances'][i].max())} objects{coverage}"))
            rows.append(row)
            y += row.shape[0]
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(11)
    for column, title in enumerate(PREVIEW_COLUMNS):
        draw.text((column * (width + gap) + 4, 3), title, fill=(0, 0, 0), font=font)
    for column in (1, 2):
        left = column * (width + gap)
        draw.text((left, 30), "near", fill=(0, 0, 0), font=small)
        draw.text((left + width - 22, 30), "far", fill=(0, 0, 0), font=small)
    draw.text((width + gap, 43), "black: sky or beyond range", fill=(0, 0, 0), font=small)
    draw.text((2 * (width + gap), 43), "grey: no measurement", fill=(0, 0, 0), font=small)
    for top, text in labels:
        draw.text((4, top + 3), text, fill=(0, 0, 0), font=small)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


def render_spec_once(spec: str, root: str | Path, batch_size: int = 8) -> str:
    """The ``folder:`` spec of a ``sim:`` spec's scenes, rendered once into a folder under ``root``.

    Training reads a rendered folder on every epoch instead of rendering each scene again (a LiDAR
    scene at 128x416 costs about as much as a student's training step here). A folder holding a finished
    render of the same scenes and ground truth is reused; an unfinished one is rendered again. The label
    parameters (``labels=``, ``labels_seed=``) carry over to the returned spec.
    """
    from depthkd.data.spec import parse_size, parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme != "sim":
        return spec
    if "+" in parsed.path:
        raise ConfigError(f"render_spec_once: {spec!r} joins several domains; render each one on its own")
    params = dict(parsed.params)
    if "num" not in params:
        raise ConfigError(f"render_spec_once: {spec!r} has no num= (an endless stream cannot be rendered once)")
    num, seed, gt = int(params.pop("num")), int(params.pop("seed", 0)), params.pop("gt", "dense")
    size = check_size(parse_size(params.pop("size"), "size") if "size" in params else DEFAULT_SIZE)
    params.pop("batch_render", None)
    wanted = {"domain": parsed.path, "num": num, "size": list(size), "seed": seed, "gt": gt}
    folder = Path(root) / f"{parsed.path}-{num}-{size[0]}x{size[1]}-seed{seed}-{gt}"
    marker = folder / "rendered.json"
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two runs sharing a work folder (two benchmark rows started side by side) render it once: the second
    # waits for the first and then finds the finished marker instead of clearing files being written.
    with FileLock(folder.parent / f".{folder.name}.lock"):
        if not (marker.is_file() and json.loads(marker.read_text()) == wanted):
            marker.unlink(missing_ok=True)
            write_dataset(folder, parsed.path, num, size, seed=seed, gt=gt, batch_size=batch_size, overwrite=True)
            marker.write_text(json.dumps(wanted))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"folder:{folder}" + (f"?{query}" if query else "")
