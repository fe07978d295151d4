"""The training engine: recipes in, trained and exported students out (Lightning underneath).

``train(config)`` (supervised) and ``distill(config)`` (any registered method) are what the CLI calls;
``load_recipe(path, overrides)`` builds the config. See :mod:`depthkd.engine.run` for the run
directory's layout and :mod:`depthkd.distill.base` for the method contract.
"""

from depthkd.config import load_recipe
from depthkd.engine.module import DistillModule, NonFiniteLossError
from depthkd.engine.run import (
    RunResult,
    build_recipe_method,
    build_trainer,
    distill,
    run_recipe,
    stage_steps,
    train,
)
from depthkd.engine.rundir import AtomicCheckpointIO

__all__ = [
    "AtomicCheckpointIO",
    "DistillModule",
    "NonFiniteLossError",
    "RunResult",
    "build_recipe_method",
    "build_trainer",
    "distill",
    "load_recipe",
    "run_recipe",
    "stage_steps",
    "train",
]
