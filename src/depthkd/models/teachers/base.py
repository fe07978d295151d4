"""The frozen teacher every adapter derives from, and the identities that key the teacher cache.

A teacher is used as a fixed function of the image: its weights never change, it stays in eval mode
(BatchNorm uses running statistics, dropout is off) even when a surrounding LightningModule calls
``.train()``, and its forward runs under :func:`torch.inference_mode`. Outputs are cloned once outside
inference mode, so losses may use them as ordinary tensors (inference tensors cannot be saved for
backward).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthkd.errors import DataError, ModelError
from depthkd.models.outputs import OUTPUT_KINDS, TeacherOutput

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_kind(kind: str, source: str) -> str:
    """``kind`` if it is one of :data:`OUTPUT_KINDS`, else a :class:`ModelError` naming ``source``."""
    if kind not in OUTPUT_KINDS:
        raise ModelError(f"teacher {source}: output kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    return kind


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``fp32``, ``bf16``, ``fp16``."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON-serialisable settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def path_fingerprint(path: str | Path, content: bool = False) -> str:
    """Identify a file or a directory's files by name, size and modification time (or by content).

    The ``stat`` fingerprint (``content=False``, our default) is instant but changes when files are
    copied; ``content=True`` hashes every byte, stable across machines but slow for GB-sized weights.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(f"{relative}\0{stat.st_size}\0".encode())
        if content:
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def require_path(path: str | Path, spec: str, directory: bool = False) -> Path:
    """The resolved path of a teacher file or folder, or a :class:`ModelError` naming it."""
    path = Path(path).expanduser()
    exists = path.is_dir() if directory else path.is_file()
    if not exists:
        what = "folder" if directory else "file"
        raise ModelError(f"teacher {spec!r}: {what} not found: {path}")
    return path.resolve()


def resize_maps(maps: torch.Tensor, size: Sequence[int], mode: str = "bilinear",
                align_corners: bool = False) -> torch.Tensor:
    """Resize ``(B,C,h,w)`` maps to ``size`` (no-op when already there); no antialiasing.

    Upsampling a teacher's low-resolution output is the common case, where antialiasing does nothing.
    ``align_corners`` applies to the bilinear and bicubic modes (see :func:`depthkd.metrics.resize_to`).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    align = align_corners if mode in ("bilinear", "bicubic") else None
    return nn.functional.interpolate(maps, size=size, mode=mode, align_corners=align)


def as_depth_map(raw: torch.Tensor, batch: int, source: str) -> torch.Tensor:
    """A model's raw depth output as ``(B,1,h,w)``: accepts ``(B,h,w)``, ``(B,1,h,w)``, ``(B,h,w,1)``."""
    if raw.ndim == 3:
        raw = raw.unsqueeze(1)
    elif raw.ndim == 4 and raw.shape[1] != 1 and raw.shape[-1] == 1:
        raw = raw.permute(0, 3, 1, 2)
    if raw.ndim != 4 or raw.shape[0] != batch or raw.shape[1] != 1:
        raise ModelError(
            f"teacher {source} returned depth of shape {tuple(raw.shape)}; expected (B,1,H,W) or (B,H,W) "
            f"with B={batch}"
        )
    return raw


class Teacher(nn.Module):
    """A frozen depth model: images ``(B,3,H,W)`` in ``[0,1]`` -> :class:`TeacherOutput`.

    Attributes:
        kind: ``metric_depth``, ``relative_depth`` or ``relative_disparity``: the unit of ``depth``.
        teacher_id: stable identity of the weights/predictions (spec + fingerprint), for cache keys.
        preprocess_id: hash of the preprocessing settings (size, multiple, mean/std, padding, output
            resizing), for cache keys.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast for torch models); outputs are float32.
        max_depth: the largest depth the model can output, in metres, when its config says so.
        spec: what was passed to ``load_teacher``, for messages and reports.

    Subclasses implement :meth:`_predict` (depth already at the input size); :meth:`forward` adds the
    input checks, device moves, inference mode, autocast and output checks. Torch-based adapters
    (``hf:``, ``torch:``) also expose ``model`` (the frozen module, for forward hooks) and
    :meth:`preprocess` (differentiable), for methods that need gradients through the teacher with
    respect to its input, such as data-free distillation; activations captured by hooks inside
    :meth:`forward` are inference tensors and must be cloned before a loss saves them for backward.
    """

    def __init__(
        self,
        kind: str,
        teacher_id: str,
        preprocess_id: str,
        spec: str,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        max_depth: float | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.kind = check_kind(kind, spec)
        self.teacher_id = teacher_id
        self.preprocess_id = preprocess_id
        self.precision = check_precision(precision)
        self._device = torch.device(device)
        self.max_depth = max_depth

    @property
    def device(self) -> torch.device:
        """Where the teacher runs: its weights' device (follows ``.to()``), else the one it was built for."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return self._device

    # --- frozen ---------------------------------------------------------------------------------
    def freeze(self) -> Teacher:
        """Switch off gradients and put every submodule in eval mode; call after building the model."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Stay in eval mode whatever ``mode`` asks: a teacher's BatchNorm and dropout are frozen."""
        return super().train(False)

    # --- forward --------------------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        names: Sequence[str] | None = None,
        return_features: bool = False,
    ) -> TeacherOutput:
        """Predict depth (in the unit of :attr:`kind`) at the input size.

        Args:
            images: ``(B,3,H,W)`` float RGB in ``[0,1]``, on any device (moved to the teacher's).
            names: the items' ``name`` keys; needed by teachers that look predictions up by name.
            return_features: also return intermediate feature maps ``(B,C,h,w)``, shallow to deep.

        Returns:
            :class:`TeacherOutput` with float32 tensors on the device of ``images``.
        """
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise DataError(
                f"teacher {self.spec} expects float images (B,3,H,W) in [0,1], got "
                f"{tuple(images.shape)} {images.dtype}"
            )
        if names is not None and len(names) != images.shape[0]:
            raise DataError(f"teacher {self.spec}: {len(names)} names for a batch of {images.shape[0]} images")
        out_device = images.device
        with torch.inference_mode():
            with self.autocast():
                output = self._predict(images.to(self.device), names, return_features)
            depth = as_depth_map(output.depth, images.shape[0], self.spec)
            if tuple(depth.shape[-2:]) != tuple(images.shape[-2:]):
                raise ModelError(
                    f"teacher {self.spec} returned depth {tuple(depth.shape)} for images {tuple(images.shape)}; "
                    "expected the input size"
                )
            if torch.isnan(depth).any():
                raise ModelError(f"teacher {self.spec} returned NaN depth")
            if self.kind == "metric_depth" and (torch.isinf(depth).any() or (depth < 0).any()):
                low, high = float(depth.min()), float(depth.max())
                raise ModelError(f"teacher {self.spec} returned metric depth outside [0, inf) (min {low:.4g}, "
                                 f"max {high:.4g}): a metric teacher must give metres, 0 for no prediction")
        # Clone outside inference mode so the results are ordinary tensors usable in autograd graphs.
        depth = depth.to(device=out_device, dtype=torch.float32).clone()
        features = [f.to(device=out_device, dtype=torch.float32).clone() for f in output.features]
        return TeacherOutput(depth=depth, kind=self.kind, features=features)  # type: ignore[arg-type]

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        """Depth at the input size (any float dtype, on the teacher's device); see :meth:`forward`."""
        raise NotImplementedError

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model input for ``[0,1]`` images; teachers without a model input have none."""
        raise ModelError(f"teacher {self.spec} ({type(self).__name__}) takes no model input to prepare")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to :attr:`precision` on the teacher's device (nothing for ``fp32``)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, kind={self.kind}, precision={self.precision}, device={self.device}"

    def no_features_error(self) -> ModelError:
        """The error for ``return_features=True`` on a teacher that exposes no intermediate maps."""
        return ModelError(
            f"teacher {self.spec} ({type(self).__name__}) exposes no intermediate features; use a hf: teacher, "
            "a depthkd student (torch:FILE.safetensors) or an ONNX model with feature outputs"
        )
