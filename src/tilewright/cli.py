"""The `tilewright` command line.

Exit codes: 0 success; 1 internal error (a bug: rerun with -v); 2 bad input or
usage (unreadable, unsupported, over a limit; `import`: one or more files failed);
3 output exists (pass --overwrite); 4 cancelled or over the time limit; 130 interrupted.
Errors are one line on stderr; tracebacks only with -v.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from tilewright import __version__
from tilewright.config import get_settings
from tilewright.errors import TilewrightError

app = typer.Typer(
    name="tilewright",
    help="Turn images and whole-slide scans into web-ready tile pyramids (DZI, pyramidal TIFF, IIIF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("tilewright")


class OutputKind(str, Enum):
    dzi = "dzi"
    tiff = "tiff"
    iiif = "iiif"


class TileFormat(str, Enum):
    jpeg = "jpeg"
    png = "png"
    webp = "webp"


_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tilewright {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log what happens; tracebacks on errors.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version.")] = None,
) -> None:
    _state["verbose"] = verbose
    from tilewright.logs import setup_logging

    setup_logging(get_settings(), verbose=verbose)


@contextmanager
def _errors() -> Iterator[None]:
    """One line on stderr and the right exit code for every failure."""
    try:
        yield
    except TilewrightError as exc:
        if _state["verbose"]:
            log.exception("failed")
        typer.echo(f"tilewright: error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("tilewright: interrupted; nothing was published", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback to a user
        if _state["verbose"]:
            log.exception("internal error")
        reason = " ".join(str(exc).split())[:300]
        typer.echo(f"tilewright: internal error: {type(exc).__name__}: {reason} (rerun with -v for details)", err=True)
        raise typer.Exit(1) from None


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="Image, slide file or DICOM folder.")],
    properties: Annotated[bool, typer.Option(help="Include every vendor property.")] = True,
) -> None:
    """Print a slide's format, size, levels, tile size, resolution and associated images as JSON."""
    from tilewright.formats import open_slide

    with _errors():
        with open_slide(slide) as reader:
            typer.echo(json.dumps(reader.info().to_dict(with_properties=properties), indent=2))


@app.command()
def convert(
    slide: Annotated[Path, typer.Argument(help="Image, slide file or DICOM folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output path without extension (OUT.dzi + OUT_files/, OUT.tiff, OUT/).")],
    to: Annotated[OutputKind, typer.Option("--to", help="Output kind.")] = OutputKind.dzi,
    tile_size: Annotated[Optional[int], typer.Option(min=16, max=8192, help="Tile size (default 254 DZI, 256 TIFF, 512 IIIF).")] = None,
    overlap: Annotated[Optional[int], typer.Option(min=0, max=64, help="DZI tile overlap (default 1).")] = None,
    fmt: Annotated[Optional[TileFormat], typer.Option("--format", help="Tile encoding.")] = None,
    quality: Annotated[Optional[int], typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = None,
    base_only: Annotated[bool, typer.Option("--base-only", help="TIFF: full resolution only, no lower levels.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be written; write nothing.")] = False,
    iiif_id: Annotated[Optional[str], typer.Option(help="IIIF: base URL the output folder is served under.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
) -> None:
    """Convert one image or slide to a Deep Zoom, pyramidal TIFF or IIIF pyramid."""
    from tilewright.convert import convert as run_convert, make_options

    settings = get_settings()
    with _errors():
        options = make_options(to.value, settings, tile_size=tile_size, overlap=overlap,
                               tile_format=fmt.value if fmt else None, quality=quality, base_only=base_only,
                               overwrite=overwrite, iiif_id=iiif_id)
        with _progress_bar(f"{slide.name} -> {to.value}", enabled=not as_json and not dry_run) as progress:
            result = run_convert(slide, output, to.value, options=options, settings=settings,
                                 dry_run=dry_run, progress=progress)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif dry_run:
        typer.echo(f"would write {result.kind} of {result.width} x {result.height}: {result.levels} levels, "
                   f"{result.tiles} tiles")
        for path in result.paths:
            typer.echo(f"  {path}")
    else:
        rate = result.tiles / result.seconds if result.seconds else 0
        typer.echo(f"wrote {result.output}: {result.width} x {result.height}, {result.levels} levels, "
                   f"{result.tiles} tiles, {result.bytes / 2**20:.1f} MiB in {result.seconds:.1f} s "
                   f"({rate:.0f} tiles/s)")


@app.command("import")
def import_(
    directory: Annotated[Path, typer.Argument(help="Folder to scan recursively.", exists=True, file_okay=False)],
    outdir: Annotated[Path, typer.Option("-o", "--output", help="Folder for the outputs (same layout as DIRECTORY).")],
    to: Annotated[OutputKind, typer.Option("--to", help="Output kind.")] = OutputKind.dzi,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Files converted at once (default: TILEWRIGHT_WORKERS).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Convert again files whose output exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
) -> None:
    """Convert every supported file under DIRECTORY, in parallel, skipping those already done."""
    from tilewright.convert import make_options
    from tilewright.importer import plan_import, run_one

    settings = get_settings()
    with _errors():
        options = make_options(to.value, settings, overwrite=overwrite)
        todo, skipped = plan_import(directory, outdir, to.value, options)
        done: list[dict] = []
        failed: list[dict] = []
        with _progress_bar(f"import {len(todo)} files", enabled=not as_json, total=len(todo)) as progress:
            with ProcessPoolExecutor(max_workers=workers or settings.workers) as pool:
                futures = {pool.submit(run_one, src, out, to.value, options): src for src, out in todo}
                for count, future in enumerate(as_completed(futures), 1):
                    outcome = future.result()
                    (done if outcome["ok"] else failed).append(outcome)
                    progress(count / max(1, len(todo)), futures[future].name)
    summary = {"converted": done, "failed": failed, "skipped": [str(p) for p in skipped]}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(f"converted {len(done)}, skipped {len(skipped)} already done, failed {len(failed)}")
        for item in failed:
            typer.echo(f"  failed: {item['error']}", err=True)
    if failed:
        raise typer.Exit(2)


@contextmanager
def _progress_bar(label: str, *, enabled: bool, total: int = 100) -> Iterator:
    """A rich progress bar on a terminal; nothing in a pipe or when disabled."""
    if not enabled or not sys.stderr.isatty():
        yield lambda fraction, stage: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[stage]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False, redirect_stdout=False) as bar:
        task = bar.add_task(label, total=1.0, stage="")
        yield lambda fraction, stage: bar.update(task, completed=fraction, stage=stage)


def run() -> None:
    """Console entry point."""
    os.environ.setdefault("VIPS_WARNING", "0")
    app()


if __name__ == "__main__":
    run()
