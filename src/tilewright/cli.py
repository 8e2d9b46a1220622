"""The `tilewright` command line.

Exit codes: 0 success; 1 internal error (a bug: rerun with -v); 2 bad input or
usage (unreadable, unsupported, over a limit; `import`: one or more files failed);
3 output exists (pass --overwrite); 4 cancelled or over the time limit; 130 interrupted.
Errors are one line on stderr; tracebacks only with -v.

Start-up is kept short: each command imports what it needs (libvips, FastAPI, Celery, SQLAlchemy,
rich) inside its function, so that `--help` and `info` load none of what they do not use. Those
imports are marked "lazy" below.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tilewright import __version__
from tilewright.cli_support import exit_on_error as _errors  # shared helpers, under the names used below
from tilewright.cli_support import progress_bar as _progress_bar
from tilewright.cli_support import state as _state
from tilewright.cli_upload import upload
from tilewright.config import Settings, get_settings
from tilewright.config.markdown import settings_table
from tilewright.errors import InputError
from tilewright.imaging.image_formats import format_list
from tilewright.logs import server_log_level, setup_logging, worker_log_level
from tilewright.outputs import KINDS

app = typer.Typer(
    name="tilewright",
    help="Turn images and whole-slide scans into web-ready tile pyramids (DZI, pyramidal TIFF, IIIF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("tilewright")


#: `--to`'s choices: every output kind `outputs.WRITERS` has
OutputKind = StrEnum("OutputKind", {kind: kind for kind in KINDS})  # type: ignore[misc]  # mypy wants a literal


class TileFormat(StrEnum):
    jpeg = "jpeg"
    png = "png"
    webp = "webp"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tilewright {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log what happens; tracebacks on errors.")] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    _state["verbose"] = verbose
    with _errors():  # a bad setting: one line, not a traceback
        setup_logging(get_settings(), verbose=verbose)


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="Image, slide file or DICOM folder.")],
    properties: Annotated[bool, typer.Option(help="Include every vendor property.")] = True,
) -> None:
    """Print a slide's format, size, levels, tile size, resolution and associated images as JSON.

    `passthrough` says, for a pyramidal TIFF output with the default options, which levels would be copied
    as stored tiles and which rendered, and why."""
    from tilewright.convert import level_paths, make_options  # lazy: libvips
    from tilewright.formats import open_slide  # lazy: libvips

    with _errors():
        with open_slide(slide) as reader:
            data = reader.info().to_dict(with_properties=properties)
            data["passthrough"] = {"tiff": level_paths(reader, "tiff", make_options("tiff", get_settings())).to_dict()}
            typer.echo(json.dumps(data, indent=2))


@app.command("config")
def show_config(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the README's table of every setting.")] = False,
) -> None:
    """Print the settings in effect (defaults, TOML file, environment), secrets masked."""
    if markdown:
        typer.echo(settings_table())
        return
    with _errors():
        typer.echo(get_settings().model_dump_json(indent=2))


@app.command()
def convert(
    slide: Annotated[Path, typer.Argument(help="Image, slide file or DICOM folder.")],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Output path without extension (OUT.dzi + OUT_files/, OUT.tiff, OUT/)."),
    ],
    to: Annotated[OutputKind, typer.Option("--to", help="Output kind.")] = OutputKind("dzi"),
    tile_size: Annotated[
        int | None, typer.Option(min=16, max=8192, help="Tile size (default 254 DZI, 256 TIFF, 512 IIIF).")
    ] = None,
    overlap: Annotated[int | None, typer.Option(min=0, max=64, help="DZI tile overlap (default 1).")] = None,
    fmt: Annotated[TileFormat | None, typer.Option("--format", help="Tile encoding.")] = None,
    quality: Annotated[int | None, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = None,
    base_only: Annotated[
        bool, typer.Option("--base-only", help="TIFF: full resolution only, no lower levels.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be written; write nothing.")] = False,
    iiif_id: Annotated[
        str | None,
        typer.Option(help="IIIF: the image's id, the URL the output folder is served at (default: its /outputs/ URL)."),
    ] = None,
    passthrough: Annotated[
        bool,
        typer.Option(
            "--passthrough/--no-passthrough",
            help="TIFF: copy the source's stored JPEG tiles where they fit (no decode, no re-encode); "
            "--no-passthrough renders every level.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
) -> None:
    """Convert one image or slide to a Deep Zoom, pyramidal TIFF or IIIF pyramid."""
    from tilewright.convert import convert as run_convert  # lazy: libvips
    from tilewright.convert import make_options  # lazy: libvips

    settings = get_settings()
    with _errors():
        options = make_options(
            to.value,
            settings,
            tile_size=tile_size,
            overlap=overlap,
            tile_format=fmt.value if fmt else None,
            quality=quality,
            base_only=base_only,
            overwrite=overwrite,
            iiif_id=iiif_id,
            passthrough=passthrough,
        )
        with _progress_bar(f"{slide.name} -> {to.value}", enabled=not as_json and not dry_run) as progress:
            result = run_convert(
                slide, output, to.value, options=options, settings=settings, dry_run=dry_run, progress=progress
            )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif dry_run:
        typer.echo(
            f"would write {result.kind} of {result.width} x {result.height}: {result.levels} levels, "
            f"{result.tiles} tiles ({result.tiles_copied} copied, {result.tiles_rendered} rendered)"
        )
        for line in _level_lines(result.passthrough):
            typer.echo(f"  {line}")
        for path in result.paths:
            typer.echo(f"  {path}")
    else:
        rate = result.tiles / result.seconds if result.seconds else 0
        typer.echo(
            f"wrote {result.output}: {result.width} x {result.height}, {result.levels} levels, "
            f"{result.tiles} tiles ({result.tiles_copied} copied), {result.bytes / 2**20:.1f} MiB in "
            f"{result.seconds:.1f} s ({rate:.0f} tiles/s)"
        )


def _level_lines(paths: dict[str, Any]) -> list[str]:
    """`convert --dry-run`'s account of each level's path (`outputs.passthrough.PassPlan.to_dict`)."""
    lines = [f"pass-through: {paths['reason']}" if paths["applies"] else f"plain path: {paths['reason']}"]
    for level in paths["levels"]:
        how = "copy" if level["copied"] else f"render from source level {level['source']}"
        lines.append(
            f"level {level['level']}: {level['width']} x {level['height']}, {how} ({level['tiles']} tiles): "
            f"{level['reason']}"
        )
    return lines


@app.command()
def process(
    file: Annotated[Path, typer.Argument(help="Image or slide to process.")],
    outdir: Annotated[Path, typer.Option("-o", "--output", help="Folder the outputs and metadata.json go into.")],
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe name or .toml path (default: TILEWRIGHT_DEFAULT_RECIPE).")
    ] = None,
    op: Annotated[
        list[str] | None,
        typer.Option("--op", help="Run this chain instead of a recipe, e.g. --op resize=0.5 --op blur=2 (repeat)."),
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help=f"With --op: {format_list()}.")] = None,
    quality: Annotated[int | None, typer.Option(min=1, max=100, help="With --op: encoder quality.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Run a recipe (thumbnails, optimised and watermarked copies, metadata.json; a DZI for slides) or a chain."""
    from tilewright.recipes import chain_recipe, load_recipe, run_recipe  # lazy: libvips

    settings = get_settings()
    with _errors():
        if op:
            if recipe:
                raise typer.BadParameter("give --recipe or --op, not both")
            chosen = chain_recipe(op, file.stem.split(".")[0] or "output", fmt, quality, settings)
        else:
            chosen = load_recipe(recipe, settings)
        with _progress_bar(f"{file.name} -> {chosen.name}", enabled=not as_json) as progress:
            metadata = run_recipe(file, outdir, chosen, settings, progress=progress, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(metadata, indent=2))
    else:
        outputs = metadata.get("outputs", [])
        typer.echo(
            f"wrote {len(outputs)} outputs for {file.name} ({metadata.get('width')} x "
            f"{metadata.get('height')}) into {outdir}"
        )
        for item in outputs:
            typer.echo(f"  {item['file']}: {item['width']} x {item['height']}, {item['bytes']:,} bytes")


@app.command("import")
def import_(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder to scan recursively, or one image.", exists=True, show_default=False)
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", exists=True, help="DIRECTORY given as an option (Cytomine PIMS's import_local_images.py)."
        ),
    ] = None,
    outdir: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Folder for the outputs (same layout as DIRECTORY; default: OUTPUT_ROOT)."),
    ] = None,
    to: Annotated[OutputKind, typer.Option("--to", help="Output kind.")] = OutputKind("dzi"),
    workers: Annotated[
        int | None, typer.Option(min=1, help="Files converted at once (default: TILEWRIGHT_WORKERS).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Convert again files whose output exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
) -> None:
    """Convert every supported file under DIRECTORY, in parallel, skipping those already done."""
    given = [folder for folder in (directory, path) if folder is not None]
    if len(given) != 1:
        raise typer.BadParameter("give the folder once: as DIRECTORY or as --path")
    from concurrent.futures import ProcessPoolExecutor, as_completed  # here: `process` and `info` never need it

    from tilewright.convert import make_options  # lazy: libvips
    from tilewright.importer import plan_import, run_one  # lazy: libvips

    settings = get_settings()
    with _errors():
        options = make_options(to.value, settings, overwrite=overwrite)
        outdir = outdir or settings.resolved_output_root()
        todo, skipped = plan_import(given[0], outdir, to.value, options)
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default: TILEWRIGHT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: TILEWRIGHT_PORT).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log at DEBUG level (TILEWRIGHT_DEBUG).")] = False,
) -> None:
    """Run the HTTP server (FastAPI on uvicorn) with its job executor; docs at /docs."""
    import uvicorn  # lazy: the server's stack

    from tilewright.server import create_app  # lazy: FastAPI

    # --host/--port are the settings of this server: the job outputs' URLs (IIIF ids) name them too
    settings = get_settings().model_copy(
        update={"host": host or get_settings().host, "port": get_settings().port if port is None else port}
        | ({"debug": True} if debug else {})
    )
    with _errors():
        if debug:  # the callback set up logging before this option was read
            setup_logging(settings, verbose=_state["verbose"])
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=server_log_level(settings, verbose=_state["verbose"]),
            log_config=None,
            root_path=settings.resolved_root_path(),
            # the app applies uvicorn's ProxyHeadersMiddleware itself, with TILEWRIGHT_FORWARDED_ALLOW_IPS, after
            # its own check of the same peer (server/proxy.py); uvicorn's (trusting 127.0.0.1 by default) stays off
            proxy_headers=False,
        )


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once (default: TILEWRIGHT_CONCURRENCY).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Celery node name, e.g. w1@%h.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log at DEBUG level (TILEWRIGHT_DEBUG).")] = False,
) -> None:
    """Run a Celery worker that executes jobs from TILEWRIGHT_BROKER_URL."""
    from tilewright.jobs.celery_app import run_worker  # lazy: Celery

    settings = get_settings().model_copy(update={"debug": True} if debug else {})
    with _errors():
        if debug:  # the callback set up logging before this option was read
            setup_logging(settings, verbose=_state["verbose"])
        level = worker_log_level(settings, verbose=_state["verbose"])
        run_worker(settings, concurrency=concurrency, hostname=name, loglevel=level)


@app.command()
def submit(
    kind: Annotated[str, typer.Argument(help="Job kind: convert, import or ping.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A parameter, k=v (repeatable).")] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key (default: hash of kind, params, input).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job record as JSON.")] = False,
) -> None:
    """Submit a job to the job database (and the broker with Celery); prints its id."""
    from tilewright.db import init_db  # lazy: SQLAlchemy
    from tilewright.jobs.service import submit_job  # lazy: SQLAlchemy, Celery

    settings = get_settings()
    with _errors():
        params: dict[str, str] = {}
        for item in param or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise InputError(f"--param needs k=v, not {item!r}")
            params[name.strip()] = value
        init_db(settings)
        executor = None
        if settings.executor == "celery":
            from tilewright.jobs.executors import CeleryExecutor, broker_reachable  # lazy: Celery

            ok, reason = broker_reachable(settings.broker_url)
            if ok:
                executor = CeleryExecutor(settings)
            else:
                typer.echo(f"tilewright: warning: {reason}; the job waits in the database for a server", err=True)
        job, created = submit_job(settings, executor, kind, params, key=key)
        if as_json and not wait:
            typer.echo(json.dumps(job, indent=2))
        else:
            typer.echo(job["id"])
        if not created:
            typer.echo(f"tilewright: same key as job {job['id']} ({job['state']}); nothing new submitted", err=True)
        if wait:
            job = _follow(settings, job["id"])
            if as_json:
                typer.echo(json.dumps(job, indent=2))
            else:
                typer.echo(f"{job['state']}" + (f": {job['error']}" if job["error"] else ""))
            if job["state"] != "succeeded":
                raise typer.Exit(2 if job["state"] == "failed" else 4)


def _follow(settings: Settings, job_id: str) -> dict[str, Any]:
    """Poll the job record until it ends, drawing its progress."""
    from tilewright.jobs import store  # lazy: SQLAlchemy

    with _progress_bar(f"job {job_id[:8]}", enabled=True) as progress:
        while True:
            job = store.get(settings, job_id)
            progress(job["progress"], f"{job['state']}: {job['stage']}")
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)


@app.command()
def jobs(
    job_id: Annotated[str | None, typer.Argument(help="Show one job in full.")] = None,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List recent jobs, or show one."""
    from tilewright.db import init_db  # lazy: SQLAlchemy
    from tilewright.jobs import store  # lazy: SQLAlchemy

    settings = get_settings()
    with _errors():
        init_db(settings)
        if job_id:
            typer.echo(json.dumps(store.get(settings, job_id), indent=2))
            return
        rows = store.list_jobs(settings, state=state, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(
            f"{row['id']}  {row['kind']:<8} {row['state']:<10} {row['progress'] * 100:5.1f}%  "
            f"{row['created_at']}  {row['error'] or row['stage']}"
        )


@app.command()
def watch(
    url: Annotated[str, typer.Argument(help="What to poll: az://container/prefix, s3://bucket/prefix or a folder.")],
    interval: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds between listings (default TILEWRIGHT_WATCH_INTERVAL_SECONDS)."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="List once, submit, and exit.")] = False,
    cursor: Annotated[Path | None, typer.Option(help="Cursor file (default DATA_DIR/watch/<hash>.json).")] = None,
) -> None:
    """Poll a store that sends no events; submit a convert_blob job for every new or changed blob."""
    from tilewright.db import init_db  # lazy: SQLAlchemy
    from tilewright.events.watch import watch as run_watch  # lazy: the stores' SDKs

    settings = get_settings()
    with _errors():
        init_db(settings)
        executor = None
        if settings.executor == "celery":
            from tilewright.jobs.executors import CeleryExecutor, broker_reachable  # lazy: Celery

            if broker_reachable(settings.broker_url)[0]:
                executor = CeleryExecutor(settings)
        totals = run_watch(
            url, settings, executor, once=once, interval=interval, cursor=cursor, echo=lambda line: typer.echo(line)
        )
        if once:
            typer.echo(json.dumps(totals), err=True)


app.command("upload")(upload)  # slide-atlas's uploader (cli_upload.py)


def run() -> None:
    """Console entry point."""
    os.environ.setdefault("VIPS_WARNING", "0")
    gc.freeze()  # what is imported by now lives until exit: the collector (and the one at exit) skip it
    app()


if __name__ == "__main__":
    run()
