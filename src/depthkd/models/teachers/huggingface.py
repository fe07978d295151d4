"""``hf:DIR``: any transformers ``AutoModelForDepthEstimation`` saved in a local folder, run offline.

The adapter owns the model's preprocessing (see :mod:`.hf_preprocessing`), reads the output kind from
the model config, and exposes the backbone's hidden states as feature maps: ViT tokens are reshaped to
the patch grid after dropping the CLS and register tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers.base import Teacher, path_fingerprint, require_path, settings_hash
from depthkd.models.teachers.hf_preprocessing import HFPreprocessing

log = logging.getLogger(__name__)

PROCESSOR_FILE = "preprocessor_config.json"
# Output kind per model type (docs/PROTOCOLS.md, "Teacher output kinds in the Hugging Face models").
KIND_BY_MODEL_TYPE = {"dpt": "relative_disparity", "glpn": "metric_depth", "zoedepth": "metric_depth"}


def kind_from_config(config: Any) -> str | None:
    """The output kind a model config implies, or ``None`` when depthkd does not know it."""
    model_type = getattr(config, "model_type", None)
    if model_type == "depth_anything":
        estimation = getattr(config, "depth_estimation_type", "relative")
        return {"relative": "relative_disparity", "metric": "metric_depth"}.get(estimation)
    return KIND_BY_MODEL_TYPE.get(model_type)


def max_depth_from_config(config: Any, kind: str) -> float | None:
    """The largest depth (metres) a metric model can output, when its config records it."""
    if kind != "metric_depth":
        return None
    bins = getattr(config, "bin_configurations", None)
    if bins:
        return float(max(b["max_depth"] for b in bins))
    value = getattr(config, "max_depth", None)
    return float(value) if value is not None else None


def patch_size_from_config(config: Any) -> int | None:
    """The ViT patch size of the model or its backbone (square patches), if any."""
    for source in (config, getattr(config, "backbone_config", None)):
        size = getattr(source, "patch_size", None) if source is not None else None
        if size is not None:
            return int(size[0]) if isinstance(size, (list, tuple)) else int(size)
    return None


def _load_processor(path: Path, config: Any, overrides: dict[str, Any], trust_remote_code: bool) -> Any:
    """The folder's saved image processor, else the default processor of the model type (with a warning)."""
    import transformers
    from transformers import AutoImageProcessor

    if (path / PROCESSOR_FILE).is_file():
        try:
            return AutoImageProcessor.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=trust_remote_code, **overrides
            )
        except (OSError, ValueError, TypeError) as err:
            raise ModelError(f"cannot load the image processor in {path / PROCESSOR_FILE}: {err}") from err
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    names = IMAGE_PROCESSOR_MAPPING_NAMES.get(config.model_type)
    class_name = (names.get("torchvision") or names.get("pil")) if isinstance(names, dict) else None
    if class_name is None or not hasattr(transformers, class_name):
        raise ModelError(
            f"{path} has no {PROCESSOR_FILE} and model type {config.model_type!r} has no default image "
            "processor; save the model's processor there (processor.save_pretrained(DIR))"
        )
    log.warning(
        "%s has no %s: using %s defaults, which may not match how the model was trained",
        path,
        PROCESSOR_FILE,
        class_name,
    )
    return getattr(transformers, class_name)(**overrides)


class HuggingFaceTeacher(Teacher):
    """A transformers depth model with its processor's preprocessing, frozen.

    Attributes:
        model: the ``*ForDepthEstimation`` module (its parameters are frozen).
        preprocessing: the processor settings reproduced on the device.
        feature_layers: indices into the model's ``hidden_states`` returned as features (``None``:
            all of them, embeddings first; our default, pick the layers the method needs).
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessing: HFPreprocessing,
        kind: str,
        teacher_id: str,
        spec: str,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        feature_layers: Sequence[int] | None = None,
        max_depth: float | None = None,
    ) -> None:
        super().__init__(
            kind=kind,
            teacher_id=teacher_id,
            preprocess_id=settings_hash({"hf": preprocessing.settings()}),
            spec=spec,
            precision=precision,
            device=device,
            max_depth=max_depth,
        )
        self.model = model.to(self.device)
        self.preprocessing = preprocessing
        self.feature_layers = list(feature_layers) if feature_layers is not None else None
        self.patch_size = patch_size_from_config(model.config)
        self.freeze()

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of the model's weights, which its ``pixel_values`` must have."""
        return next(self.model.parameters()).dtype

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model's ``pixel_values`` for ``[0,1]`` images (differentiable; no inference mode)."""
        pixel_values, _ = self.preprocessing.prepare(images.to(self.device, torch.float32))
        return pixel_values.to(self.input_dtype)

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        # Resize and normalise in float32 (no bfloat16 antialiasing kernels), then cast to the weights' dtype.
        pixel_values, layout = self.preprocessing.prepare(images.float())
        pixel_values = pixel_values.to(self.input_dtype)
        outputs = self.model(pixel_values=pixel_values, output_hidden_states=return_features, return_dict=True)
        depth = self.preprocessing.restore(outputs.predicted_depth.unsqueeze(1), layout)
        features = self._feature_maps(outputs.hidden_states, pixel_values.shape[-2:]) if return_features else []
        return TeacherOutput(depth=depth, kind=self.kind, features=features)  # type: ignore[arg-type]

    def _feature_maps(self, hidden_states: Sequence[torch.Tensor] | None, input_size: torch.Size) -> list[torch.Tensor]:
        """Hidden states as ``(B,C,h,w)`` maps, shallow to deep."""
        if not hidden_states:
            raise ModelError(f"teacher {self.spec} returned no hidden states for output_hidden_states=True")
        states = list(hidden_states)
        if self.feature_layers is not None:
            try:
                states = [states[i] for i in self.feature_layers]
            except IndexError as err:
                raise ModelError(
                    f"teacher {self.spec}: feature_layers {self.feature_layers} out of range for "
                    f"{len(hidden_states)} hidden states"
                ) from err
        return [self._as_map(state, input_size) for state in states]

    def _as_map(self, state: torch.Tensor, input_size: torch.Size) -> torch.Tensor:
        """A ``(B,C,h,w)`` map as is; ViT tokens ``(B,N,C)`` reshaped to the patch grid."""
        if state.ndim == 4:
            return state
        if state.ndim != 3 or self.patch_size is None:
            raise ModelError(
                f"teacher {self.spec}: cannot turn a hidden state of shape {tuple(state.shape)} into a map"
            )
        grid_h, grid_w = int(input_size[0]) // self.patch_size, int(input_size[1]) // self.patch_size
        prefix = state.shape[1] - grid_h * grid_w  # CLS and register tokens come first
        if prefix < 0:
            raise ModelError(
                f"teacher {self.spec}: {state.shape[1]} tokens do not cover a {grid_h}x{grid_w} patch grid"
            )
        tokens = state[:, prefix:]
        return tokens.transpose(1, 2).reshape(state.shape[0], state.shape[2], grid_h, grid_w)


def load_hf_teacher(
    path: str | Path,
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    kind: str | None = None,
    trust_remote_code: bool = False,
    image_processor_kwargs: dict[str, Any] | None = None,
    feature_layers: Sequence[int] | None = None,
    output_interpolation: str = "bilinear",
    precision: str = "fp32",
    content_hash: bool = False,
    uint8_resize: str | None = None,
) -> HuggingFaceTeacher:
    """Load ``AutoModelForDepthEstimation`` and its processor from a local folder, offline.

    Args:
        path: the folder written by ``save_pretrained`` (``config.json``, weights, ideally
            ``preprocessor_config.json``).
        dtype: weight dtype (default float32, whatever the checkpoint was saved in).
        kind: override the output kind read from the config (needed for model types depthkd does not
            know, e.g. a DPT fine-tuned for metric depth).
        trust_remote_code: allow code shipped in the folder to run (off unless asked).
        image_processor_kwargs: processor settings to override, e.g. ``{"size": {"height": 266,
            "width": 266}}`` to run Depth Anything at a lower resolution.
        feature_layers: which hidden states :meth:`forward` returns as features (default all).
        output_interpolation: ``bilinear`` (our default) or ``bicubic`` (as the pipeline does).
        content_hash: key ``teacher_id`` on file contents instead of size and modification time.
        uint8_resize: how images are resized (see :mod:`.hf_preprocessing`): ``None`` (default) as the
            processor resizes 8-bit images (``torchvision`` or ``pil`` fixed-point arithmetic, bit-exact;
            ``none`` for ZoeDepth), or ``none`` for the float resize the processor applies to float pixels.
    """
    from transformers import AutoConfig, AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    from depthkd.progress import progress_enabled

    if not progress_enabled():
        hf_logging.disable_progress_bar()  # transformers' own "Loading weights" bars follow DEPTHKD_PROGRESS
    folder = require_path(path, spec, directory=True)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
        model = AutoModelForDepthEstimation.from_pretrained(
            str(folder),
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            dtype=dtype or torch.float32,
        )
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"cannot load a depth estimation model from {folder}: {err}") from err
    implied = kind_from_config(config)
    if kind is None and implied is None:
        raise ModelError(
            f"teacher {spec}: depthkd does not know the output kind of model type {config.model_type!r}; "
            "pass kind='metric_depth', 'relative_depth' or 'relative_disparity'"
        )
    if kind is not None and implied is not None and kind != implied:
        log.warning("teacher %s: using kind=%s although its config implies %s", spec, kind, implied)
    kind = kind or implied
    processor = _load_processor(folder, config, dict(image_processor_kwargs or {}), trust_remote_code)
    preprocessing = HFPreprocessing.from_processor(
        processor, output_interpolation=output_interpolation, uint8_resize=uint8_resize
    )
    identity = {
        "files": path_fingerprint(folder, content=content_hash),
        "dtype": str(dtype or torch.float32),
        "precision": precision,
        "kind": kind,
    }
    return HuggingFaceTeacher(
        model=model,
        preprocessing=preprocessing,
        kind=kind,  # type: ignore[arg-type]
        teacher_id=f"hf:{folder.name}#{settings_hash(identity)}",
        spec=spec,
        precision=precision,
        device=device,
        feature_layers=feature_layers,
        max_depth=max_depth_from_config(config, kind),  # type: ignore[arg-type]
    )
