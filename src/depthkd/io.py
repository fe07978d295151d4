"""Reading and writing images, depth maps and instance maps, with errors that name the file.

Images are float32 ``(3,H,W)`` RGB in ``[0,1]``; depth is float32 ``(1,H,W)`` in metres with ``0``
for "no ground truth". 16-bit PNG depth stores ``round(depth * scale)`` (``scale`` = 1000 for
millimetres, 256 for KITTI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from depthkd.errors import DataError

PathLike = str | Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def plane(array: np.ndarray) -> np.ndarray:
    """``(H,W)`` from ``(H,W)``, ``(1,H,W)`` or ``(1,1,H,W)``: leading unit axes go, a 1-pixel side stays
    (``np.squeeze`` would turn a 1xW map into a vector). Other shapes are returned as they are."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _open_image(path: Path, what: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"cannot decode {what} {path}: {exc}") from exc
    return image


def read_rgb(path: PathLike) -> torch.Tensor:
    """Read an image file as float32 ``(3,H,W)`` RGB in ``[0,1]``."""
    path = _require_file(path, "image")
    image = _open_image(path, "image").convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def write_rgb(path: PathLike, image: torch.Tensor | np.ndarray) -> None:
    """Write a ``(3,H,W)`` float image in ``[0,1]`` (or ``(H,W,3)`` uint8 array) as PNG/JPEG."""
    if isinstance(image, torch.Tensor):
        array = (image.detach().float().clamp(0, 1) * 255.0 + 0.5).byte().permute(1, 2, 0).cpu().numpy()
    else:
        array = image
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def read_depth(path: PathLike, scale: float = 1000.0, signed: bool = False) -> torch.Tensor:
    """Read a depth map as float32 ``(1,H,W)`` metres.

    ``.png``: 16-bit integers divided by ``scale``; ``.npy``: float metres, used as is.
    Raises :class:`DataError` for a missing or undecodable file, an 8-bit PNG, NaN or infinite values,
    or negative ones unless ``signed`` (relative disparity may be negative; depth in metres may not).
    """
    path = _require_file(path, "depth map")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read depth array {path}: {exc}") from exc
        array = plane(np.asarray(array, dtype=np.float32))
        if array.ndim == 3 and array.shape[-1] == 1:  # (H,W,1), as some tools save single-channel maps
            array = array[..., 0]
        if array.ndim != 2:
            raise DataError(f"depth array {path} has shape {array.shape}; expected (H,W) or (1,H,W)")
    else:
        image = _open_image(path, "depth map")
        array = np.asarray(image)
        if array.dtype not in (np.uint16, np.int32, np.uint32) and image.mode not in ("I;16", "I"):
            raise DataError(
                f"depth map {path} is mode {image.mode!r} ({array.dtype}); expected a 16-bit PNG"
            )
        array = array.astype(np.float32) / float(scale)
    if np.isnan(array).any():
        raise DataError(f"depth map {path} contains NaN values; expected metres with 0 for missing")
    if np.isinf(array).any():
        raise DataError(f"depth map {path} contains infinite values; expected metres with 0 for missing")
    if not signed and (array < 0).any():
        raise DataError(f"depth map {path} contains negative values (min {float(array.min()):.4g}); "
                        "expected metres with 0 for missing")
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)


def write_depth_png(path: PathLike, depth: torch.Tensor | np.ndarray, scale: float = 1000.0) -> None:
    """Write depth in metres as a 16-bit PNG of ``round(depth * scale)``, clipped to 0..65535."""
    array = depth.detach().float().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    array = plane(array)
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(np.rint(array * scale), 0, 65535).astype(np.uint16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def read_label_png(path: PathLike) -> torch.Tensor:
    """Read an 8- or 16-bit label PNG (instance or class ids) as int64 ``(H,W)``."""
    path = _require_file(path, "label map")
    array = np.asarray(_open_image(path, "label map")).astype(np.int64)
    if array.ndim != 2:
        raise DataError(f"label map {path} has shape {array.shape}; expected a single-channel PNG")
    return torch.from_numpy(array)


def write_label_png(path: PathLike, labels: torch.Tensor | np.ndarray) -> None:
    """Write integer labels ``(H,W)`` (0..65535) as a 16-bit PNG."""
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(plane(array).astype(np.uint16)).save(path)


def list_images(root: PathLike) -> list[Path]:
    """All image files below ``root``, sorted; a clear error if the folder is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found below {root}")
    return files


def colorize_depth(
    depth: torch.Tensor | np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "turbo_r",
) -> np.ndarray:
    """Colour-map a depth map to ``(H,W,3)`` uint8; pixels ``<= 0`` (no depth) are black.

    ``vmin``/``vmax`` default to the 2nd/98th percentiles of the valid pixels; pass the same values
    for several maps to compare them on one scale.
    """
    import matplotlib

    array = depth.detach().float().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    array = plane(array).astype(np.float32)
    valid = np.isfinite(array) & (array > 0)
    if vmin is None or vmax is None:
        values = array[valid] if valid.any() else np.array([0.0, 1.0])
        vmin = float(np.percentile(values, 2)) if vmin is None else vmin
        vmax = float(np.percentile(values, 98)) if vmax is None else vmax
    norm = np.clip((array - vmin) / max(vmax - vmin, 1e-8), 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](norm)[..., :3]
    rgb[~valid] = 0.0
    return (rgb * 255.0 + 0.5).astype(np.uint8)
