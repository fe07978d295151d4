"""Typed recipe configs: YAML with ``base:`` inheritance, dotted overrides, validated sections.

A recipe is a YAML mapping with the sections ``data``, ``student``, ``teacher``, ``method``, ``optim``,
``trainer``, ``eval``, ``cache`` and ``run``. Each section is a dataclass below (``student`` is
:class:`depthkd.models.StudentConfig`; ``method.options`` is the chosen method's own ``Config``
dataclass), so an unknown key or a value of the wrong type stops with a :class:`ConfigError` that
names the key, the file and the valid keys.

Loading order: the file's ``base:`` (a path or list of paths, relative to the file) is loaded first
and the file deep-merged over it (mappings merge, everything else replaces); then the overrides
``key.sub=value`` are applied (values parsed as YAML, so ``3e-4``, ``true``, ``[64, 96]`` work); then
the result is validated into :class:`RecipeConfig`. Naming a different ``method.name`` (in a file or
an override) drops the inherited ``method.options``, which belonged to the other method.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import platform
import re
import subprocess
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml

from depthkd.errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Training augmentation (``depthkd.data.transforms.default_train_transform``)."""

    rotation: float = 2.5
    flip_p: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.0
    gamma: float = 0.1


@dataclass
class DataConfig:
    """Training and validation data.

    Attributes:
        train: data spec of the training set (``sim:indoor?num=64&size=96x128``, ``nyu-list:...``).
        val: data spec of the validation set; ``None`` disables periodic validation.
        unlabelled: data spec of extra images without depth (``images:my_photos``; any spec, whose depth
            is then ignored), for label-scarce real data: they join ``train`` as unlabelled items
            (all-zero depth, ``labelled=False``), used by teacher-based losses and ignored by supervised
            ones. Keys only one of the two sources has are dropped so that they batch together; both
            must reach one image size, so set ``crop`` unless their images already share a size.
            ``labels=`` inside the ``train`` spec instead hides the depth of part of ``train`` itself.
        crop: training crop ``(H, W)``; ``None`` trains on full images (they must share one size).
        augment: random rotation, crop, flip and colour jitter; ``False`` centre-crops to ``crop``.
        augmentation: the augmentation's ranges.
        val_resize: resize validation items to ``(H, W)`` (the network input); ``None`` keeps them.
        val_limit: periodic validation uses the first N items only (our option for quick checks); the
            exported student is scored on the whole set.
        batch_size: per device (the global batch is ``batch_size * devices * num_nodes``).
        val_batch_size: per device, for validation.
        num_workers: DataLoader worker processes.
    """

    train: str = "sim:indoor?num=64&size=96x128&seed=0"
    val: str | None = None
    unlabelled: str | None = None
    crop: tuple[int, int] | None = None
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    val_resize: tuple[int, int] | None = None
    val_limit: int | None = None
    batch_size: int = 8
    val_batch_size: int = 4
    num_workers: int = 0


@dataclass
class TeacherConfig:
    """The teacher, loaded with ``depthkd.models.teachers.load_teacher``.

    Attributes:
        spec: ``hf:DIR``, ``onnx:FILE``, ``torch:FILE``, ``preds:DIR`` or a built-in teacher name.
        dtype: weight dtype of torch-based teachers.
        precision: autocast precision of the teacher's forward (``fp32``, ``bf16``, ``fp16``).
        options: further keyword arguments of the adapter (e.g. ``kind``, ``scale`` for ``preds:``).
    """

    spec: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodTerm:
    """One more method whose loss terms are added with ``weight`` (see :class:`MethodConfig`)."""

    name: str = "supervised"
    weight: float = 1.0
    options: Any = field(default_factory=dict)


@dataclass
class MethodConfig:
    """The distillation method (``depthkd.distill``) and its options.

    ``options`` is validated by the method's own ``Config`` dataclass. ``add`` lists further methods
    whose losses join as a weighted sum (e.g. ``response`` + ``supervised``); they share the main
    method's stages.
    """

    name: str = "supervised"
    weight: float = 1.0
    options: Any = field(default_factory=dict)
    add: list[MethodTerm] = field(default_factory=list)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (one per stage unless a stage overrides it).

    Attributes:
        name: ``adamw``, ``adam`` or ``sgd``.
        lr: peak learning rate (one-cycle's maximum).
        encoder_lr_scale: learning-rate factor for the student's encoder (AdaBins/DisDepth use 0.1).
        scheduler: ``onecycle`` (TIE-KD, AdaBins), ``cosine`` or ``none``.
        pct_start, div_factor, final_div_factor: one-cycle shape (torch's defaults).
    """

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    encoder_lr_scale: float = 1.0
    scheduler: Literal["onecycle", "cosine", "none"] = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4


@dataclass
class TrainerConfig:
    """The Lightning trainer.

    Attributes:
        max_steps: optimiser steps of a single-stage method; takes precedence over ``max_epochs``.
        max_epochs: epochs over the training set, converted to steps with the global batch size.
        accelerator, devices, num_nodes, strategy: as in ``lightning.Trainer`` (``strategy: ddp`` for
            several GPUs; ``batch_size`` is per device).
        precision: ``32``, ``bf16-mixed`` or ``16-mixed``.
        gradient_clip_val: clip the gradient norm to this value (``None``: no clipping).
        accumulate_grad_batches: batches per optimiser step.
        ema_decay: keep an exponential moving average of the weights with this decay; validation,
            checkpoints and the exported student use the average.
        val_every_n_steps: validate every N training batches (``None``: at the end of each stage).
        checkpoint_every_n_steps: write ``last.ckpt`` every N optimiser steps.
        monitor: validation metric selecting ``best.ckpt`` (lower is better unless ``monitor_mode``).
        skip_nonfinite: skip batches with a NaN/inf loss (and count them) instead of stopping; a step
            whose batches were all skipped does not update the weights but counts toward the budget.
        channels_last: memory format for GPU convolutions.
        loggers: any of ``csv`` and ``tensorboard``.
        deterministic: ``torch.use_deterministic_algorithms`` through Lightning.
    """

    max_steps: int | None = None
    max_epochs: int | None = 1
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Literal["32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"] = "32"
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    ema_decay: float | None = None
    val_every_n_steps: int | None = None
    checkpoint_every_n_steps: int = 100
    log_every_n_steps: int = 10
    monitor: str = "abs_rel"
    monitor_mode: Literal["min", "max"] = "min"
    skip_nonfinite: bool = False
    channels_last: bool = False
    loggers: list[Literal["csv", "tensorboard"]] = field(default_factory=lambda: ["csv", "tensorboard"])
    deterministic: bool = False


@dataclass
class EvalConfig:
    """Validation protocol (``depthkd.metrics``).

    ``teacher_align: auto`` evaluates a metric teacher like the student and a relative one with
    ``lstsq_disparity`` (relative disparity) or ``lstsq`` (relative depth).
    """

    protocol: str = "sim_indoor"
    align: str = "none"
    teacher_align: str = "auto"


@dataclass
class CacheConfig:
    """Teacher-output cache: run the teacher once over the training set, then read its maps.

    ``dir: None`` caches under ``<run.root>/teacher-cache``. Only for methods that need the teacher's
    final map, not its features.
    """

    enabled: bool = False
    dir: str | None = None
    batch_size: int = 8


@dataclass
class RunConfig:
    """Where and how the run is recorded.

    Attributes:
        name: run name; the directory is ``<root>/<name>`` unless ``dir`` is set.
        seed: seeds weights, data order and augmentation.
        resume: ``auto`` (continue from ``<run_dir>/checkpoints/last.ckpt`` if present), ``never``
            (an existing ``last.ckpt`` is an error) or the path of a checkpoint.
        export: weights written to ``student.safetensors``: the ``last`` (our default) or the ``best``
            by ``trainer.monitor``.
    """

    name: str = "run"
    root: str = "runs"
    dir: str | None = None
    seed: int = 0
    resume: str = "auto"
    export: Literal["last", "best"] = "last"

    @property
    def path(self) -> Path:
        """The run directory."""
        return Path(self.dir) if self.dir else Path(self.root) / self.name


def _student_config_type() -> type:
    from depthkd.models.student import StudentConfig

    return StudentConfig


def _default_student() -> Any:
    return _student_config_type()()


@dataclass
class RecipeConfig:
    """A whole recipe; ``student`` is a :class:`depthkd.models.StudentConfig`."""

    data: DataConfig = field(default_factory=DataConfig)
    student: Any = field(default_factory=_default_student, metadata={"type": _student_config_type})
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    run: RunConfig = field(default_factory=RunConfig)


# --------------------------------------------------------------------------------------------------
# Typed conversion
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeSource:
    """Where a recipe's values came from: its file and the ``key=value`` overrides applied over it.

    Passed wherever a file name was, so that an error about a key set by ``--set`` names that override
    instead of a file that never mentioned the key.
    """

    file: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    """``(dotted key, override text)`` per override, in order."""

    def describe(self, key: str) -> str:
        """`` from --set X`` / `` in FILE`` / `` in FILE and --set X`` for ``key`` (``''``: the recipe)."""
        covering = [text for okey, text in self.overrides if key_within(key, okey)]
        if covering:
            return f" from --set {covering[-1]}"  # the last override of a key is the one that stands
        inner = [text for okey, text in self.overrides if key == "" or key_within(okey, key)]
        places = ([self.file] if self.file else []) + [f"--set {text}" for text in inner]
        return f" in {' and '.join(places)}" if places else ""


def key_within(key: str, section: str) -> bool:
    """Whether dotted ``key`` is ``section`` or below it (``optim.betas[0]`` is within ``optim.betas``)."""
    return key == section or key.startswith((f"{section}.", f"{section}["))


def _origin(key: str, source: str | RecipeSource | None) -> str:
    """`` in FILE`` or `` from --set ...``: where the value at ``key`` came from."""
    if isinstance(source, RecipeSource):
        return source.describe(key)
    return f" in {source}" if source else ""


def _where(key: str, source: str | RecipeSource | None) -> str:
    return f"{key!r}{_origin(key, source)}"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str | RecipeSource | None) -> Any:
    """``value`` converted to type ``tp`` or a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{_where(key, source)}: {value!r} is not a valid {_type_name(tp)}")

    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise bad
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # ``X | None``: report X's own, more precise error
            return _coerce(value, options[0], key, source)
        # Prefer an exact type match so ``int | str`` keeps 1 as int and "auto" as str.
        for option in args:
            if isinstance(option, type) and type(value) is option:
                return value
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(choice, str) and not isinstance(value, bool) and str(value) == choice):
                return choice
        raise ConfigError(
            f"{_where(key, source)}: {value!r} is not one of {', '.join(repr(a) for a in args)}"
        )
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(key, source)}: expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, key, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise bad from None
            if number.is_integer():
                return int(number)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{_where(key, source)}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise bad
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, value_type, f"{key}.{k}", source) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        factory = f.metadata.get("type")
        out[f.name] = factory() if factory else hints[f.name]
    return out


def unknown_key_error(key: str, valid: Sequence[str], source: str | RecipeSource | None, what: str = "") -> ConfigError:
    """The error for an unknown key: names it, suggests the closest, lists the valid ones."""
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    section = f" for {what}" if what else ""
    return ConfigError(
        f"unknown key {_where(key, source)}{hint}; valid keys{section}: {', '.join(sorted(valid))}"
    )


def from_dict(
    cls: type, values: Mapping[str, Any], prefix: str = "", source: str | RecipeSource | None = None
) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and converting types.

    ``prefix`` is the dotted position of ``values`` in the recipe (for messages); ``source`` the file (or a
    :class:`RecipeSource`, so that messages name the override that set a key).
    """
    types_by_name = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key)
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in types_by_name:
            raise unknown_key_error(dotted, list(types_by_name), source, prefix or "the recipe")
        kwargs[key] = _coerce(value, types_by_name[key], dotted, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # ConfigError included: a section's own check
        raise ConfigError(f"{prefix or 'recipe'}{_origin(prefix, source)}: {exc}") from exc


STUDENT_SPEC_PREFIX = "student:"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def bool_word(text: str) -> bool | None:
    """A boolean as a spec or command line writes it (1/0, true/false, yes/no, on/off), else ``None``."""
    lowered = text.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _spec_value(text: str, tp: Any) -> Any:
    """A ``student:`` option value as written on a command line, before type coercion."""
    if tp is bool and (flag := bool_word(text)) is not None:
        return flag
    if "," in text and not text.lstrip().startswith("["):
        text = f"[{text}]"  # 32,16,8 is a list, like [32,16,8]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def student_config_from_spec(spec: str) -> Any:
    """``student:BACKBONE?key=value&...`` (the prefix optional) -> a checked ``StudentConfig``.

    Architecture specs for ``inspect`` and ``benchmark`` (random weights): booleans as ``1``/``true``,
    lists as ``32,16`` or ``[32,16]``; ``pretrained_path`` is not an option here. Unknown keys list the
    valid ones.
    """
    from urllib.parse import parse_qsl

    backbone, _, query = spec.removeprefix(STUDENT_SPEC_PREFIX).partition("?")
    if not backbone:
        raise ConfigError(f"student spec {spec!r} names no backbone, e.g. student:mobilenetv2_100")
    types_by_name = {k: v for k, v in _field_types(_student_config_type()).items() if k != "pretrained_path"}
    options: dict[str, Any] = {"backbone": backbone}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in types_by_name:
            raise unknown_key_error(key, list(types_by_name), spec, "a student spec")
        options[key] = _spec_value(value, types_by_name[key])
    return from_dict(_student_config_type(), options, "student", spec)


def to_dict(config: Any) -> Any:
    """Plain YAML/JSON-friendly data (dataclasses to dicts, tuples to lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def dump_config(config: RecipeConfig) -> str:
    """The resolved recipe as YAML (loadable again with :func:`load_recipe`)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


# --------------------------------------------------------------------------------------------------
# YAML files, inheritance and overrides
# --------------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse recipe {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: nested mappings merge, any other value replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _drop_options_of_replaced_method(base: Mapping[str, Any], new_name: Any) -> dict[str, Any]:
    """``base`` without ``method.options`` when ``new_name`` replaces its method (they would not fit)."""
    method = base.get("method")
    if not isinstance(method, Mapping) or new_name is None or method.get("name", "supervised") == new_name:
        return dict(base)
    kept = {k: v for k, v in method.items() if k != "options"}
    return {**base, "method": kept}


def merge_recipes(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` deep-merged over ``base``; a child naming another method drops the base's method options."""
    child_method = child.get("method")
    if isinstance(child_method, Mapping) and "name" in child_method:
        base = _drop_options_of_replaced_method(base, child_method["name"])
    return deep_merge(base, child)


def read_recipe_dict(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a recipe file with its ``base:`` files merged underneath."""
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"recipe inheritance cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"'base' in {path} must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge_recipes(merged, read_recipe_dict(path.parent / base, (*_chain, path)))
    return merge_recipes(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.lr=3e-4'`` -> ``(['optim', 'lr'], '3e-4')`` with the value parsed as YAML."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not key.sub=value (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``key.sub=value`` set (intermediate mappings are created as needed)."""
    out = deep_merge({}, data)
    for text in overrides:
        parts, value = parse_override(text)
        if parts == ["method", "name"]:
            out = _drop_options_of_replaced_method(out, value)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override {text!r}: {where!r} is a value ({child!r}), not a section")
            else:
                child = node[part] = dict(child)
            node = child
        node[parts[-1]] = value
    return out


def _validate_method_options(config: RecipeConfig, source: str | RecipeSource | None) -> None:
    from depthkd.distill.registry import get_method

    terms: list[tuple[str, MethodConfig | MethodTerm]] = [("method", config.method)]
    terms += [(f"method.add[{i}]", term) for i, term in enumerate(config.method.add)]
    for prefix, term in terms:
        method_cls = get_method(term.name)
        options = term.options
        if dataclasses.is_dataclass(options) and isinstance(options, method_cls.Config):
            continue
        if not isinstance(options, Mapping):
            raise ConfigError(f"{_where(prefix + '.options', source)} must be a mapping, got {options!r}")
        term.options = from_dict(method_cls.Config, options, f"{prefix}.options", source)


def recipe_from_dict(data: Mapping[str, Any], source: str | RecipeSource | None = None) -> RecipeConfig:
    """Validate a raw mapping into a :class:`RecipeConfig` (method options included)."""
    config = from_dict(RecipeConfig, data, "", source)
    _validate_method_options(config, source)
    _check_consistency(config, source)
    return config


def _check_consistency(config: RecipeConfig, source: str | RecipeSource | None) -> None:
    trainer = config.trainer
    if trainer.max_steps is None and trainer.max_epochs is None:
        raise ConfigError(f"trainer{_origin('trainer', source)}: set max_steps or max_epochs")
    # val_every_n_steps: 0 would silently mean "at the end of each stage", which is what null says.
    at_least = {"max_steps": 1, "max_epochs": 1, "accumulate_grad_batches": 1, "checkpoint_every_n_steps": 1,
                "val_every_n_steps": 1, "num_nodes": 1, "log_every_n_steps": 0}  # 0: Lightning logs nothing
    for name, minimum in at_least.items():
        value = getattr(trainer, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{_where('trainer.' + name, source)}: {value} must be >= {minimum}")
    _check_devices(trainer.devices, source)
    _check_optim(config.optim, source)
    _check_evaluation(config, source)
    if config.data.batch_size < 1:
        raise ConfigError(f"{_where('data.batch_size', source)}: {config.data.batch_size} must be >= 1")
    if config.run.resume not in ("auto", "never") and not Path(config.run.resume).is_file():
        raise ConfigError(
            f"{_where('run.resume', source)}: {config.run.resume!r} is neither 'auto', 'never' "
            "nor an existing checkpoint file"
        )


_DEVICE_INDICES = re.compile(r"\s*\d+\s*(,\s*\d+\s*)*,?\s*")


def _check_devices(devices: int | str, source: str | RecipeSource | None) -> None:
    """What ``lightning.Trainer(devices=...)`` accepts, checked before the run instead of deep inside it."""
    if isinstance(devices, int):
        ok = devices >= 1 or devices == -1
    else:
        ok = devices.strip() in ("auto", "-1") or _DEVICE_INDICES.fullmatch(devices) is not None
    if not ok:
        raise ConfigError(
            f"{_where('trainer.devices', source)}: {devices!r} is not a number of devices (1, 2, ...), "
            "-1 (all), 'auto' or GPU indices such as '0,1'"
        )


def _check_optim(optim: OptimConfig, source: str | RecipeSource | None) -> None:
    """Ranges torch checks only when the optimiser is built (or never: a negative lr ascends)."""
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise ConfigError(f"{_where('optim.lr', source)}: {optim.lr} must be > 0")
    if not all(0.0 <= beta < 1.0 for beta in optim.betas):
        raise ConfigError(f"{_where('optim.betas', source)}: {optim.betas} must both be in [0, 1)")
    for name in ("weight_decay", "momentum"):
        value = getattr(optim, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{_where('optim.' + name, source)}: {value} must be >= 0")
    if not 0.0 <= optim.pct_start <= 1.0:
        raise ConfigError(f"{_where('optim.pct_start', source)}: {optim.pct_start} must be in [0, 1]")


def _check_evaluation(config: RecipeConfig, source: str | RecipeSource | None) -> None:
    """Protocol, alignments and monitored metric must exist before hours of training, not after."""
    from depthkd.metrics import ALIGNMENTS, METRIC_KEYS, PROTOCOLS

    checks = [
        ("eval.protocol", config.eval.protocol, list(PROTOCOLS)),
        ("eval.align", config.eval.align, list(ALIGNMENTS)),
        ("eval.teacher_align", config.eval.teacher_align, ["auto", *ALIGNMENTS]),
        ("trainer.monitor", config.trainer.monitor, list(METRIC_KEYS)),
    ]
    for key, value, valid in checks:
        if value not in valid:
            raise ConfigError(f"{_where(key, source)}: {value!r} is not one of {', '.join(valid)}")


def find_recipe(name: str | Path) -> Path:
    """A recipe path: as given if it exists, else ``configs/<name>[.yaml]`` of the project."""
    path = Path(name)
    if path.is_file():
        return path
    # A name that already ends in .yaml/.yml is looked for as it is (not as nope.yaml.yaml).
    names = [path.name] if path.suffix.lower() in (".yaml", ".yml") else [path.name, f"{path.name}.yaml"]
    candidates = []
    for folder in (Path(__file__).resolve().parents[2] / "configs", Path(__file__).resolve().parent / "configs"):
        candidates += [folder / file_name for file_name in names if folder / file_name not in candidates]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"recipe file not found: {name} (also looked for {', '.join(map(str, candidates))})")


def load_recipe(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Load, inherit, override and validate a recipe; ``path=None`` starts from the defaults."""
    file = None
    data: dict[str, Any] = {}
    if path is not None:
        resolved = find_recipe(path)
        file = str(resolved)
        data = read_recipe_dict(resolved)
        if not data and not overrides:  # it would train on the defaults without a word
            raise ConfigError(f"recipe {resolved} is empty; expected a mapping of sections (data:, student:, "
                              "method:, ...) or base: a recipe to build on")
    data = apply_overrides(data, overrides)
    source = RecipeSource(file, tuple((".".join(parse_override(text)[0]), text) for text in overrides))
    return recipe_from_dict(data, source)


# --------------------------------------------------------------------------------------------------
# Run directory records
# --------------------------------------------------------------------------------------------------

RECORDED_PACKAGES = (
    "depthkd",
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "transformers",
    "safetensors",
    "onnx",
    "onnxruntime",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (``None`` when absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(folder: str | Path | None = None) -> dict[str, Any] | None:
    """``{'commit': sha, 'dirty': bool}`` of the source tree, or ``None`` outside a git checkout."""
    folder = Path(folder) if folder else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def write_run_metadata(run_dir: str | Path, config: RecipeConfig) -> None:
    """Write ``config.yaml`` (the resolved recipe) and ``environment.json`` (versions, git) to the run."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    environment = {"versions": package_versions(), "git": git_revision(), "platform": platform.platform()}
    (run_dir / "environment.json").write_text(json.dumps(environment, indent=2) + "\n")
    logger.info("run records written to %s", run_dir)


__all__ = [
    "PRECISIONS",
    "AugmentConfig",
    "CacheConfig",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "MethodTerm",
    "OptimConfig",
    "RecipeConfig",
    "RecipeSource",
    "RunConfig",
    "TeacherConfig",
    "TrainerConfig",
    "apply_overrides",
    "deep_merge",
    "dump_config",
    "find_recipe",
    "from_dict",
    "git_revision",
    "key_within",
    "load_recipe",
    "merge_recipes",
    "package_versions",
    "parse_override",
    "read_recipe_dict",
    "recipe_from_dict",
    "to_dict",
    "unknown_key_error",
    "write_run_metadata",
]
