"""Helpers for the export tests: tiny students, an independent onnxruntime run, a tiny Depth Anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from depthkd.models import build_student
from depthkd.models.student import DepthStudent

SIZE = (64, 64)
# A 4-layer, 32-wide Depth Anything V2 with a 56-px processor: the real code path, seconds to run.
TINY_DEPTH_ANYTHING = {
    "overrides": {"reassemble_hidden_size": 32, "neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16},
    "backbone_overrides": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 4, "out_indices": [1, 2, 3, 4]},
    "processor_overrides": {"size": {"height": 56, "width": 56}},
}


def tiny_student(head: str = "regression", **options: object) -> DepthStudent:
    """A MobileNetV2-0.5 student (0.8 M parameters) in eval mode."""
    return build_student("mobilenetv2_050", head, **options).eval()  # type: ignore[arg-type]


def ort_depth(path: Path, graph_input: np.ndarray) -> np.ndarray:
    """Run an ONNX file with a plain onnxruntime session (independent of depthkd's helpers)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["depth"], {"image": graph_input})[0]


def torch_depth(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(images).depth.numpy()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
