"""``onnx:FILE``: any depth model exported to ONNX, run as a black box with onnxruntime.

What the file cannot say about itself comes from keyword arguments or a sidecar JSON next to it
(``model.onnx`` -> ``model.json``)::

    {"input": "pixels", "output": "depth", "kind": "metric_depth",
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "size": [256, 320] | null, "size_multiple": 32, "features": ["feat1", "feat2"]}

``input``/``output`` default to the graph's first input/output; ``kind`` is required (never guessed);
``size`` defaults to the input's fixed height and width when the graph has them; ``features`` names
extra outputs returned as feature maps. Keyword arguments override the sidecar.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers.base import (
    Teacher,
    as_depth_map,
    path_fingerprint,
    require_path,
    resize_maps,
    settings_hash,
)
from depthkd.models.teachers.preprocessing import ImagePreprocessing, is_finite_size

log = logging.getLogger(__name__)

SIDECAR_KEYS = (
    "input",
    "output",
    "kind",
    "mean",
    "std",
    "size",
    "size_multiple",
    "features",
    "interpolation",
    "antialias",
    "input_format",
)
#: ``float``: (B,3,H,W) float RGB (normalised by mean/std); ``uint8``: (B,H,W,3) bytes, as cameras give them.
INPUT_FORMATS = ("float", "uint8")


def sidecar_path(model_path: str | Path) -> Path:
    """Where the sidecar of ``model_path`` lives: the same name with a ``.json`` suffix."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: Path) -> dict[str, Any]:
    """The settings in :func:`sidecar_path`, or ``{}`` when there is no such file."""
    sidecar = sidecar_path(model_path)
    if not sidecar.is_file():
        return {}
    try:
        values = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read the ONNX sidecar {sidecar}: {err}") from err
    if not isinstance(values, dict):
        raise ModelError(f"ONNX sidecar {sidecar} must hold a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SIDECAR_KEYS))
    if unknown:
        raise ModelError(f"ONNX sidecar {sidecar}: unknown keys {unknown}; expected some of {list(SIDECAR_KEYS)}")
    return values


def _providers(device: torch.device) -> list[str]:
    """onnxruntime execution providers for ``device`` (CPU fallback with a warning)."""
    import onnxruntime

    if device.type == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("onnxruntime has no CUDA provider here; running the ONNX teacher on the CPU")
    return ["CPUExecutionProvider"]


class OnnxTeacher(Teacher):
    """An onnxruntime session wrapped as a frozen teacher (no torch parameters).

    The model input is ``preprocessing(images)`` as float32 (or float16 when the graph asks for it);
    a graph with a fixed batch of 1 is run image by image. Output is resized back bilinearly.
    """

    def __init__(
        self,
        session: Any,
        input_name: str,
        output_name: str,
        feature_names: Sequence[str],
        preprocessing: ImagePreprocessing,
        kind: str,
        teacher_id: str,
        spec: str,
        device: str | torch.device = "cpu",
        input_format: str = "float",
    ) -> None:
        super().__init__(
            kind=kind,
            teacher_id=teacher_id,
            preprocess_id=settings_hash({"onnx": preprocessing.settings()}),
            spec=spec,
            device="cpu",  # inputs are handed to onnxruntime as numpy arrays
        )
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.feature_names = list(feature_names)
        self.preprocessing = preprocessing
        self.input_format = input_format
        graph_input = next(i for i in session.get_inputs() if i.name == input_name)
        self.input_numpy_dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
        self.single_image = graph_input.shape[0] == 1

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model input for ``[0,1]`` images (resized and normalised)."""
        return self.preprocessing(images.float())

    def _run(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        if self.single_image and batch.shape[0] > 1:
            parts = [self.session.run(outputs, {self.input_name: batch[i : i + 1]}) for i in range(batch.shape[0])]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(outputs))]
        return self.session.run(outputs, {self.input_name: batch})

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        if return_features and not self.feature_names:
            raise self.no_features_error()
        prepared = self.preprocess(images).cpu()
        if self.input_format == "uint8":
            pixels = torch.round(prepared.clamp(0, 1) * 255).to(torch.uint8)
            batch = pixels.permute(0, 2, 3, 1).contiguous().numpy()
        else:
            batch = prepared.numpy().astype(self.input_numpy_dtype)
        wanted = [self.output_name] + (self.feature_names if return_features else [])
        try:
            results = self._run(batch, wanted)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"teacher {self.spec} failed on input {batch.shape}: {err}") from err
        depth = as_depth_map(torch.from_numpy(np.asarray(results[0], dtype=np.float32)), batch.shape[0], self.spec)
        depth = resize_maps(depth, images.shape[-2:], "bilinear")
        features = []
        for name, value in zip(self.feature_names, results[1:]):
            if np.ndim(value) != 4:
                raise ModelError(
                    f"teacher {self.spec}: feature output {name!r} has shape {np.shape(value)}; expected (B,C,h,w)"
                )
            features.append(torch.from_numpy(np.asarray(value, dtype=np.float32)))
        return TeacherOutput(depth=depth, kind=self.kind, features=features)  # type: ignore[arg-type]


def load_onnx_teacher(
    path: str | Path,
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    precision: str = "fp32",
    content_hash: bool = False,
    **options: Any,
) -> OnnxTeacher:
    """Open an ONNX depth model; ``options`` are the sidecar keys (they override the sidecar file)."""
    import onnxruntime

    model_path = require_path(path, spec)
    unknown = sorted(set(options) - set(SIDECAR_KEYS))
    if unknown:
        raise ModelError(f"teacher {spec}: unknown options {unknown}; expected some of {list(SIDECAR_KEYS)}")
    if dtype not in (None, torch.float32) or precision != "fp32":
        log.warning("teacher %s: an ONNX model runs in its exported precision; dtype/precision ignored", spec)
    settings = {**read_sidecar(model_path), **{k: v for k, v in options.items() if v is not None}}
    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=_providers(torch.device(device)))
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot open the ONNX model {model_path}: {err}") from err
    inputs, outputs = session.get_inputs(), session.get_outputs()
    input_name = settings.get("input", inputs[0].name)
    output_name = settings.get("output", outputs[0].name)
    feature_names = list(settings.get("features") or [])
    known_outputs = {o.name for o in outputs}
    if input_name not in {i.name for i in inputs}:
        raise ModelError(f"ONNX model {model_path} has no input {input_name!r}; inputs: {[i.name for i in inputs]}")
    for name in [output_name, *feature_names]:
        if name not in known_outputs:
            raise ModelError(f"ONNX model {model_path} has no output {name!r}; outputs: {sorted(known_outputs)}")
    if "kind" not in settings:
        raise ModelError(
            f"teacher {spec}: say what the model outputs with kind='metric_depth', 'relative_depth' or "
            f"'relative_disparity' (keyword or \"kind\" in {sidecar_path(model_path)})"
        )
    input_format = settings.get("input_format", "float")
    if input_format not in INPUT_FORMATS:
        raise ModelError(f"teacher {spec}: input_format {input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
    size = settings.get("size")
    input_shape = next(i for i in inputs if i.name == input_name).shape
    spatial = input_shape[1:3] if input_format == "uint8" else input_shape[2:]
    if size is None and len(input_shape) == 4 and all(is_finite_size(s) for s in spatial):
        size = list(spatial)
    preprocessing = ImagePreprocessing.from_options(
        mean=settings.get("mean"),
        std=settings.get("std"),
        size=size,
        size_multiple=settings.get("size_multiple"),
        interpolation=settings.get("interpolation"),
        antialias=settings.get("antialias"),
    )
    identity = {
        "file": path_fingerprint(model_path, content=content_hash),
        "output": output_name,
        "kind": settings["kind"],
    }
    return OnnxTeacher(
        session=session,
        input_name=input_name,
        output_name=output_name,
        feature_names=feature_names,
        preprocessing=preprocessing,
        kind=settings["kind"],
        teacher_id=f"onnx:{model_path.name}#{settings_hash(identity)}",
        spec=spec,
        device=device,
        input_format=input_format,
    )
