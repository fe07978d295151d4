"""Progress bars for loops a person waits on (count, rate, elapsed time, ETA).

Library code calls :func:`track`; set ``DEPTHKD_PROGRESS=0`` (or pass ``enabled=False``) to silence
bars, e.g. in tests or when logging to a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether progress bars are shown (``DEPTHKD_PROGRESS`` unset or not ``0``)."""
    return os.environ.get("DEPTHKD_PROGRESS", "1") != "0"


def make_progress(enabled: bool | None = None) -> Progress:
    """A rich ``Progress`` with count, rate (items/s), elapsed time and ETA columns."""
    show = progress_enabled() if enabled is None else enabled
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not show,
    )


def rate_text(progress: Progress, task_id: int) -> str:
    """The task's current speed as text, e.g. ``'12.3/s'``."""
    task = progress.tasks[task_id]
    speed = task.finished_speed or task.speed
    return f"{speed:.1f}/s" if speed else "-/s"


def track(
    iterable: Iterable[T],
    description: str,
    total: int | None = None,
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate over ``iterable`` while showing a progress bar with rate and ETA."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    show = progress_enabled() if enabled is None else enabled
    if not show:
        yield from iterable
        return
    progress = make_progress(True)
    with progress:
        task = progress.add_task(description, total=total, rate="-/s")
        for item in iterable:
            yield item
            progress.advance(task)
            progress.update(task, rate=rate_text(progress, task))
