"""Distillation methods: one module per method, registered by name.

``get_method(name)`` returns a method class; :mod:`depthkd.distill.base` documents the contract a new
method follows (a file in this package that uses ``@register_method`` is picked up automatically).
"""

from depthkd.distill.base import (
    CombinedMethod,
    LossOutput,
    Method,
    OptimizerSpec,
    SetupContext,
    Stage,
)
from depthkd.distill.registry import METHODS, build_method, get_method, method_names, register_method

__all__ = [
    "METHODS",
    "CombinedMethod",
    "LossOutput",
    "Method",
    "OptimizerSpec",
    "SetupContext",
    "Stage",
    "build_method",
    "get_method",
    "method_names",
    "register_method",
]

method_names()  # import every method module so METHODS is complete
