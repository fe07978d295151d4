"""onnxruntime sessions on the CPU with a fixed thread count, and running them on depthkd images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthkd.errors import ModelError


def onnx_session(path: str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """A CPU ``InferenceSession`` for ``path``.

    Args:
        threads: intra-op threads (``None``: onnxruntime's default, one per core). Inter-op
            parallelism stays off (sequential execution), as for a deployed single-stream model.
        optimize: all graph optimisations (fusions, layout changes); off only to inspect a graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3  # errors only: graph-fusion notices are not the user's concern
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot open {path}: {err}") from err


def run_depth(session: Any, graph_input: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output depth graph; returns the float32 ``(B,1,H,W)`` output.

    A graph with a fixed batch of 1 (the default export) is run image by image.
    """
    graph = session.get_inputs()[0]
    if graph.shape and graph.shape[0] == 1 and graph_input.shape[0] > 1:
        return np.concatenate([run_depth(session, graph_input[i : i + 1]) for i in range(graph_input.shape[0])])
    try:
        (depth,) = session.run(None, {graph.name: graph_input})
    except ValueError as err:  # more than one output
        raise ModelError(f"expected a graph with one output, got {[o.name for o in session.get_outputs()]}") from err
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime failed on an input of shape {graph_input.shape}: {err}") from err
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3:
        depth = depth[:, None]
    return depth
