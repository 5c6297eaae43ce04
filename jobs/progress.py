"""Progress output on long stages: a live spinner on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

log = logging.getLogger("feedgen.progress")
console = Console(stderr=True)


@contextmanager
def stage(title: str) -> Iterator[Callable[[str], None]]:
    """Yield a callback that reports the current step of a long stage."""
    start = time.monotonic()
    if sys.stderr.isatty():
        with console.status(f"[bold]{title}[/bold]") as status:
            yield lambda step: status.update(f"[bold]{title}[/bold]: {step}  ({time.monotonic() - start:.0f}s)")
        console.print(f"[green]✓[/green] {title} ({time.monotonic() - start:.1f}s)")
    else:
        log.info("%s: started", title, extra={"stage": title})
        yield lambda step: log.info("%s: %s", title, step, extra={"stage": title, "step": step})
        log.info("%s: done in %.1fs", title, time.monotonic() - start, extra={"stage": title, "seconds": round(time.monotonic() - start, 3)})
