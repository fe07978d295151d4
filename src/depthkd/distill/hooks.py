"""Capture intermediate outputs of named submodules with forward hooks (no change to the model's code).

``FeatureHooks(model, ["encoder.backbone.blocks.3"])`` records what those modules return on every
forward; ``collect()`` hands them back in the order given. Module names are those of
``model.named_modules()``; ``depthkd inspect MODEL`` lists them with their output shapes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from depthkd.errors import ConfigError, ModelError


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor in a module output: itself, the first tensor of a tuple/list, or of a mapping's values.

    Hugging Face layers return tuples or ``ModelOutput`` mappings whose first tensor is the hidden state.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def resolve_module(model: nn.Module, name: str, what: str = "model") -> nn.Module:
    """``model``'s submodule ``name`` or a ConfigError suggesting close names."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=3, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ConfigError(
        f"{what} has no module named {name!r}{hint} (run `depthkd inspect` to list module names)"
    )


class FeatureHooks:
    """Forward hooks recording the outputs of named submodules of one model.

    Outputs produced under ``torch.inference_mode`` (frozen teachers) are cloned on collection so
    they can take part in autograd graphs as ordinary constants.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], what: str = "model") -> None:
        self.names = list(names)
        self.what = what
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in self.names:
            module = resolve_module(model, name, what)
            self._handles.append(module.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):  # noqa: ANN202 - a hook closure
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is None:
                raise ModelError(f"{self.what} module {name!r} returned no tensor ({type(output).__name__})")
            self._outputs[name] = tensor

        return hook

    def collect(self) -> list[torch.Tensor]:
        """The recorded outputs in the order of ``names``; clears the record."""
        missing = [name for name in self.names if name not in self._outputs]
        if missing:
            raise ModelError(
                f"{self.what} modules {', '.join(missing)} did not run in the last forward pass; "
                "pick modules on the forward path"
            )
        tensors = [self._outputs[name] for name in self.names]
        self._outputs.clear()
        return [t.clone() if t.is_inference() else t for t in tensors]

    def clear(self) -> None:
        """Forget recorded outputs (e.g. after a forward whose features are not needed)."""
        self._outputs.clear()

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureHooks:
        # Copies of a method (EMA's averaged model) never run forward: share the recorder.
        return self


def token_grid(num_tokens: int, image_size: Sequence[int], max_prefix: int = 8) -> tuple[int, int, int]:
    """``(prefix, h, w)``: how ViT tokens ``(B,N,C)`` map onto a patch grid for an image ``(H, W)``.

    Tries 0, 1, 2, ... leading non-patch tokens (class and register tokens) and accepts the first
    count whose remainder factors into ``h x w`` with the image's aspect ratio (square patches).
    """
    height, width = int(image_size[0]), int(image_size[1])
    for prefix in range(max_prefix + 1):
        patches = num_tokens - prefix
        if patches <= 0:
            break
        h = round(math.sqrt(patches * height / width))
        for candidate in (h, h - 1, h + 1):
            if candidate > 0 and patches % candidate == 0:
                w = patches // candidate
                if abs(height / candidate - width / w) <= 0.1 * max(height / candidate, width / w):
                    return prefix, candidate, w
    raise ModelError(
        f"cannot arrange {num_tokens} tokens on a patch grid for an image of {height}x{width}; "
        "hook a module that outputs (B,C,h,w) maps instead"
    )


def as_feature_map(feature: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """A feature as ``(B,C,h,w)``: maps pass through; ViT tokens ``(B,N,C)`` are laid on the patch grid."""
    if feature.ndim == 4:
        return feature
    if feature.ndim == 3:
        batch, tokens, channels = feature.shape
        prefix, h, w = token_grid(tokens, image_size)
        return feature[:, prefix:, :].transpose(1, 2).reshape(batch, channels, h, w)
    raise ModelError(f"feature of shape {tuple(feature.shape)} is neither (B,C,h,w) maps nor (B,N,C) tokens")


__all__ = ["FeatureHooks", "as_feature_map", "first_tensor", "resolve_module", "token_grid"]
