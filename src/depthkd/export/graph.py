"""What goes into the ONNX graph: one input ``image``, one output ``depth``, and the input's format.

Input formats (a deployment choice, so both are offered):

- ``float`` (our default; depthkd's own convention): float32 ``(B,3,H,W)`` RGB in ``[0,1]``.
- ``uint8``: ``(B,H,W,3)`` RGB bytes, channels last, as camera drivers and image decoders hand them
  over; the graph casts, divides by 255 and transposes, so callers do no arithmetic at all.

Preprocessing (the mean/std normalisation):

- ``inside`` (our default): the graph normalises, so it takes plain images in either format.
- ``sidecar``: the graph takes already-normalised float32 ``(B,3,H,W)`` input and the mean/std are
  written to a JSON file beside the ``.onnx`` (the format the ``onnx:`` teacher adapter reads), for
  runtimes that fuse normalisation into their own image pipeline. Only depthkd students, whose
  normalisation is a known pair of buffers, can be exported this way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from depthkd.errors import ConfigError, ModelError
from depthkd.models.outputs import StudentOutput, TeacherOutput
from depthkd.models.student import DepthStudent

INPUT_NAME = "image"
OUTPUT_NAME = "depth"
INPUT_FORMATS = ("float", "uint8")
PREPROCESSING_MODES = ("inside", "sidecar")


def depth_of(output: object) -> torch.Tensor:
    """The ``(B,1,H,W)`` depth map in whatever a depth model returns (student, teacher, transformers)."""
    if isinstance(output, (StudentOutput, TeacherOutput)):
        depth = output.depth
    elif isinstance(output, torch.Tensor):
        depth = output
    elif hasattr(output, "predicted_depth"):
        depth = output.predicted_depth  # type: ignore[union-attr]
    else:
        raise ModelError(f"cannot find a depth map in a model output of type {type(output).__name__}")
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ModelError(f"model returned depth of shape {tuple(depth.shape)}; expected (B,1,H,W)")
    return depth


@dataclass(frozen=True)
class GraphInput:
    """How images in ``[0,1]`` become the graph's input, and what the PyTorch reference sees.

    Attributes:
        input_format: ``float`` or ``uint8`` (see module docs).
        mean, std: normalisation done *outside* the graph (``sidecar``), else ``None``.
    """

    input_format: str = "float"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format {self.input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("give both mean and std for sidecar normalisation, or neither")
        if self.mean is not None and self.input_format != "float":
            raise ConfigError("preprocessing='sidecar' needs input_format='float' (normalised values are not bytes)")

    @property
    def channels_last(self) -> bool:
        return self.input_format == "uint8"

    def reference_images(self, images: torch.Tensor) -> torch.Tensor:
        """The ``[0,1]`` images the PyTorch model must see to match the graph (bytes are rounded)."""
        if self.input_format == "uint8":
            return torch.round(images.clamp(0, 1) * 255) / 255
        return images

    def to_graph(self, images: torch.Tensor) -> np.ndarray:
        """``(B,3,H,W)`` ``[0,1]`` images -> the array the ONNX graph takes."""
        if self.input_format == "uint8":
            pixels = torch.round(images.clamp(0, 1) * 255).to(torch.uint8)
            return pixels.permute(0, 2, 3, 1).contiguous().numpy()
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=images.dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=images.dtype).view(1, 3, 1, 1)
            images = (images - mean) / std
        return images.float().contiguous().numpy()

    def example(self, batch: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """A random example input of the graph's dtype and layout (for tracing)."""
        images = torch.rand(batch, 3, *size, generator=generator)
        return torch.from_numpy(self.to_graph(images))


class DepthGraph(nn.Module):
    """``image -> depth``: the single function the exported graph holds.

    Wraps any depth model (a student, a teacher's network, a reference architecture) so that the
    graph has exactly one input and one output, whatever the model returns (``StudentOutput``'s
    probabilities and features are dropped, so they cost nothing at inference time).
    """

    def __init__(self, model: nn.Module, input_format: str = "float") -> None:
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format {input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
        self.model = model
        self.input_format = input_format

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_format == "uint8":
            image = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return depth_of(self.model(image))


def _require_student(model: object) -> None:
    if not isinstance(model, DepthStudent):
        raise ModelError(
            f"preprocessing='sidecar' needs a depthkd student (its normalisation is known); got "
            f"{type(model).__name__}: export it with preprocessing='inside'"
        )


def student_normalization(student: DepthStudent) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a student's encoder applies to ``[0,1]`` images."""
    _require_student(student)
    encoder = student.encoder
    return tuple(encoder.mean.flatten().tolist()), tuple(encoder.std.flatten().tolist())


def without_normalization(student: DepthStudent) -> DepthStudent:
    """A copy of ``student`` whose encoder takes already-normalised input (mean 0, std 1)."""
    _require_student(student)
    stripped = copy.deepcopy(student)
    stripped.encoder.mean.zero_()
    stripped.encoder.std.fill_(1.0)
    return stripped
