"""Lightning's log lines reach the application's handlers once, without product adverts."""

from __future__ import annotations

import logging

import lightning  # noqa: F401  (attaches Lightning's own handler)

from depthkd.engine.logs import route_lightning_logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_lightning_lines_go_through_the_root_handler_once_and_tips_are_dropped() -> None:
    root = logging.getLogger()
    collect = _Collect()
    root.addHandler(collect)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        logging.getLogger("lightning").addHandler(logging.StreamHandler())
        logging.getLogger("lightning.pytorch").addHandler(logging.StreamHandler())
        logging.getLogger("lightning.pytorch").propagate = False  # as when imported before logging was set up
        route_lightning_logs()
        for name in ("lightning", "lightning.pytorch"):
            assert not [h for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rank_zero.info("GPU available: False, used: False")
        rank_zero.info("💡 Tip: try installing something")
        assert collect.messages.count("GPU available: False, used: False") == 1
        assert not [m for m in collect.messages if "Tip:" in m]
    finally:
        root.removeHandler(collect)
        root.setLevel(old_level)


def test_the_progress_bar_shows_the_loss_and_validation_not_the_logger_version() -> None:
    from types import SimpleNamespace

    import torch

    from depthkd.engine.progress_bar import StepProgressBar

    trainer = SimpleNamespace(callback_metrics={"train/loss": torch.tensor(0.123456), "val/abs_rel": torch.tensor(0.2),
                                                "train/skipped": torch.tensor(0.0)})
    shown = StepProgressBar().get_metrics(trainer, None)
    assert shown == {"loss": "0.1235", "val AbsRel": "0.2"}
