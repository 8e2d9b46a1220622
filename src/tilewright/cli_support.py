"""What every `tilewright` command shares: the wrapper turning failures into one line and an exit code,
the progress bar, and whether `-v` was given (a module of its own so that commands kept in other
modules, such as `cli_upload`, use them without importing `cli`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from tilewright.errors import TilewrightError, one_line

log = logging.getLogger("tilewright")

#: `verbose`: `-v` before the command (tracebacks on errors)
state = {"verbose": False}


@contextmanager
def exit_on_error() -> Iterator[None]:
    """One line on stderr and the right exit code for every failure."""
    try:
        yield
    except TilewrightError as exc:
        if state["verbose"]:
            log.exception("failed")
        typer.echo(f"tilewright: error: {one_line(exc, None)}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("tilewright: interrupted; nothing was published", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if state["verbose"]:
            log.exception("internal error")
        reason = one_line(exc)
        typer.echo(f"tilewright: internal error: {type(exc).__name__}: {reason} (rerun with -v for details)", err=True)
        raise typer.Exit(1) from None


@contextmanager
def progress_bar(label: str, *, enabled: bool, total: int = 100) -> Iterator[Callable[[float, str], None]]:
    """A rich progress bar on a terminal; nothing in a pipe or when disabled."""
    if not enabled or not sys.stderr.isatty():
        yield lambda fraction, stage: None
        return
    # lazy: rich, drawn on a terminal only
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False, redirect_stdout=False) as bar:
        task = bar.add_task(label, total=1.0, stage="")
        yield lambda fraction, stage: bar.update(task, completed=fraction, stage=stage)
