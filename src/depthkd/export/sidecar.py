"""The JSON file beside an exported ``.onnx`` that says how to feed it and what it returns.

Same format and file name as the ``onnx:`` teacher adapter reads (``model.onnx`` -> ``model.json``),
so an exported student loads back as a teacher with ``load_teacher("onnx:model.onnx")``::

    {"input": "image", "output": "depth", "kind": "metric_depth",
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "size": [480, 640] | null, "size_multiple": 32, "input_format": "float" | "uint8"}

``mean``/``std`` are what the caller applies to ``[0,1]`` RGB before the graph (zeros and ones when
the graph normalises itself); ``size`` is the fixed input size, ``null`` for dynamic graphs, which
take any size but work best at multiples of ``size_multiple``. Depth comes out in metres
(``metric_depth``) for students.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthkd.errors import ModelError
from depthkd.export.graph import INPUT_NAME, OUTPUT_NAME, GraphInput
from depthkd.models.teachers.onnx import SIDECAR_KEYS, sidecar_path


def sidecar_settings(
    graph_input: GraphInput,
    kind: str,
    size: Sequence[int] | None,
    size_multiple: int,
) -> dict[str, Any]:
    """The sidecar values for a graph (see module docs)."""
    settings = {
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "kind": kind,
        "mean": list(graph_input.mean) if graph_input.mean is not None else [0.0, 0.0, 0.0],
        "std": list(graph_input.std) if graph_input.std is not None else [1.0, 1.0, 1.0],
        "size": [int(size[0]), int(size[1])] if size is not None else None,
        "size_multiple": int(size_multiple),
        "input_format": graph_input.input_format,
    }
    unknown = sorted(set(settings) - set(SIDECAR_KEYS))
    if unknown:  # the adapter rejects unknown keys: never write a file it cannot read
        raise ModelError(f"sidecar keys {unknown} are not read by the onnx: adapter ({list(SIDECAR_KEYS)})")
    return settings


def write_sidecar(onnx_path: str | Path, settings: dict[str, Any]) -> Path:
    """Write ``settings`` as the sidecar of ``onnx_path``; returns the sidecar's path."""
    path = sidecar_path(onnx_path)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path
