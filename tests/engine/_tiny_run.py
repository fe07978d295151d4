"""Run a tiny recipe in a fresh process (for the kill/resume and DDP tests).

usage: python _tiny_run.py OVERRIDES_JSON [--kill-at-step N] [--dump-weights DIR]

``--kill-at-step N`` sends SIGKILL to this process right after optimiser step N; ``--dump-weights DIR``
writes each rank's student weights to ``DIR/rank<r>.safetensors`` at the end of training.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file

from depthkd.config import load_recipe
from depthkd.engine import distill


class KillAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step >= self.step:
            for logger in trainer.loggers:  # the worst case: all a killed attempt logged is on disk
                flush = getattr(logger.experiment, "flush", None)
                if callable(flush):
                    flush()
            os.kill(os.getpid(), signal.SIGKILL)


class DumpWeights(L.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in pl_module.student.state_dict().items()}
        save_file(state, str(self.folder / f"rank{trainer.global_rank}.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("overrides")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--dump-weights", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1 if args.dump_weights else 2)
    callbacks: list[L.Callback] = []
    if args.kill_at_step is not None:
        callbacks.append(KillAt(args.kill_at_step))
    if args.dump_weights is not None:
        callbacks.append(DumpWeights(args.dump_weights))
    distill(load_recipe(None, json.loads(args.overrides)), callbacks=callbacks)


if __name__ == "__main__":
    main()
