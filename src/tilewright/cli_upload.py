"""`tilewright upload`: slide-atlas's uploader, `uploader_driver.py -i INPUT -c COLLECTION [-s SESSION]
[-t TILESIZE] [-o] [-b] [-n] [-v]`, flag for flag, into a collection of pyramidal TIFFs.

INPUT is one image or a folder (every image under it, as `import` finds them; the session then defaults
to the folder's name, as slide-atlas named it). The tile size is `-t`, else the input's own tiles (when
they suit a TIFF: a multiple of 16), else 256. Without `--server` each file is converted here, by the
`convert` code path, into OUTPUT_ROOT/COLLECTION[/SESSION]/NAME.tiff; with `--server URL` each is sent
to that server's upload API (`POST /images`, `TILEWRIGHT_API_TOKEN` as the bearer token) and its
conversion job followed to its end. `-n` says what would be done and does nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tilewright.cli_support import exit_on_error, progress_bar, state
from tilewright.config import Settings, get_settings
from tilewright.errors import InputError, TilewrightError

if TYPE_CHECKING:
    import httpx

    from tilewright.formats.base import SlideReader

KIND = "tiff"  # slide-atlas kept pyramidal TIFFs; -b keeps their base only
DEFAULT_TILE = 256  # slide-atlas's default when the input has no tiles
POLL_SECONDS = 0.5


class ServerError(TilewrightError):
    """The server refused the upload or failed its job: its status says which exit code (a 409 is 3)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.exit_code = 3 if status == 409 else 2 if status < 500 else 1


@dataclass(frozen=True)
class Item:
    """One file to upload, as it was opened here: its output (local), size and the tile size chosen."""

    source: Path
    output: Path
    reader: str
    width: int
    height: int
    tile_size: int
    tile_from: str


def _tile_size(reader: SlideReader, given: int | None) -> tuple[int, str]:
    """(tile size, where it comes from): `-t`, else the input's own tiles when a TIFF can have them, else 256."""
    if given:
        return given, "-t"
    width, height = reader.tile_size
    if reader.tiled and width == height and 16 <= width <= 8192 and width % 16 == 0:
        return width, "the input's tiles"
    return DEFAULT_TILE, "the default"


def _plan(
    source: Path, dest: Path, tile_size: int | None, overwrite: bool, settings: Settings
) -> tuple[list[Item], list[Path]]:
    """(files to upload, files skipped because their local output exists), each file opened once here."""
    from tilewright.convert import make_options  # lazy: libvips
    from tilewright.formats import open_slide  # lazy: libvips
    from tilewright.importer import plan_import  # lazy: libvips

    todo, skipped = plan_import(source, dest, KIND, make_options(KIND, settings, overwrite=overwrite))
    items = []
    for path, output in todo:
        with open_slide(path, settings) as reader:
            size, origin = _tile_size(reader, tile_size)
            items.append(Item(path, output, reader.name, reader.width, reader.height, size, origin))
    return items, skipped


def upload(
    input_path: Annotated[
        Path, typer.Option("-i", "--input", exists=True, help="An image or slide, or a folder of them.")
    ],
    collection: Annotated[str, typer.Option("-c", "--collection", help="Collection the images go into.")],
    session: Annotated[
        str | None,
        typer.Option("-s", "--session", help="Sub-folder of the collection (default: a folder INPUT's name)."),
    ] = None,
    tile_size: Annotated[
        int | None,
        typer.Option(
            "-t", "--tilesize", "--tile-size", min=16, max=8192, help="Tile size (default: the input's tiles, or 256)."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("-o", "--overwrite", help="Replace what exists (a server: convert again).")
    ] = False,
    base_only: Annotated[
        bool, typer.Option("-b", "--base-only", help="Pyramidal TIFF of the full resolution only, no lower levels.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("-n", "--dry-run", help="Say what would be done; do nothing.")] = False,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="Say more (repeat: -vv also prints the arguments).")
    ] = 0,
    server: Annotated[
        str | None,
        typer.Option("--server", help="Send to this running tilewright server (http://HOST:PORT) instead."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="With --server: follow each conversion job to its end.")
    ] = True,
) -> None:
    """Upload images into a collection as pyramidal TIFFs, as slide-atlas's uploader_driver.py did."""
    from tilewright.jobs.params import check_collection  # lazy: the job models (SQLAlchemy)

    settings = get_settings()
    if verbose:  # -v: what is done; -vv: how (and tracebacks on errors)
        logging.getLogger().setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
        state["verbose"] = state["verbose"] or verbose > 1
    if verbose > 1:
        arguments = {"input": input_path, "collection": collection, "session": session, "tilesize": tile_size}
        arguments.update(overwrite=overwrite, base_only=base_only, dry_run=dry_run, server=server)
        typer.echo("arguments: " + ", ".join(f"{name}={value}" for name, value in arguments.items()))
    with exit_on_error():
        if input_path.suffix.lower() == ".zip":
            raise InputError("zip archives are not unpacked: unzip it and give the folder", path=input_path)
        check_collection(collection)
        if session is None and input_path.is_dir():
            session = input_path.resolve().name
        if session is not None:
            check_collection(session)  # a folder name, by the collections' rule
        dest = settings.resolved_output_root() / collection
        if server is None:
            items, skipped = _plan(input_path, dest / (session or ""), tile_size, overwrite, settings)
            for path in skipped:
                typer.echo(f"skipped {path}: already in the collection (-o replaces it)")
            _local(items, base_only, overwrite, dry_run, verbose, settings)
            return
        if session is not None:
            typer.echo(f"tilewright: note: a server keeps no sessions: {session!r} is not sent", err=True)
        with _client(server.rstrip("/"), settings) as client:  # a wrong URL fails before any file is opened
            items, _ = _plan(input_path, dest, tile_size, True, settings)
            _remote(client, collection, items, base_only, overwrite, dry_run, verbose, wait)


def _local(
    items: list[Item], base_only: bool, overwrite: bool, dry_run: bool, verbose: int, settings: Settings
) -> None:
    """Convert each item here (the `convert` code path), into its place in the collection."""
    from tilewright.convert import convert, make_options  # lazy: libvips

    for item in items:
        options = make_options(KIND, settings, tile_size=item.tile_size, base_only=base_only, overwrite=overwrite)
        if verbose:
            typer.echo(
                f"{item.source}: {item.reader}, {item.width} x {item.height}; tile size {item.tile_size} "
                f"({item.tile_from}){', base only' if base_only else ''}"
            )
        with progress_bar(f"{item.source.name} -> {KIND}", enabled=not dry_run) as progress:
            result = convert(
                item.source, item.output, KIND, options=options, settings=settings, dry_run=dry_run, progress=progress
            )
        if dry_run:
            typer.echo(
                f"would write {result.paths[-1]}: {result.width} x {result.height}, {result.levels} levels, "
                f"{result.tiles} tiles of {item.tile_size}"
            )
        else:
            typer.echo(f"wrote {result.output}: {result.levels} levels, {result.tiles} tiles in {result.seconds:.1f} s")


@contextmanager
def _client(server: str, settings: Settings) -> Iterator[httpx.Client]:
    """An HTTP client of the server, with the API token as its bearer token, once the server answers."""
    import httpx  # lazy: only an upload to a server needs an HTTP client

    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    with httpx.Client(base_url=server, headers=headers, timeout=httpx.Timeout(30.0, read=300.0)) as client:
        _answer(_request(client, "GET", "/healthz"), "the server's health")
        yield client


def _remote(
    client: httpx.Client,
    collection: str,
    items: list[Item],
    base_only: bool,
    overwrite: bool,
    dry_run: bool,
    verbose: int,
    wait: bool,
) -> None:
    """Send each item to the server's `POST /images` (the tile size chosen here, so that the server
    converts as a local run would), then follow its job."""
    from tilewright.jobs.models import FINISHED  # lazy: SQLAlchemy

    server = str(client.base_url).rstrip("/")
    for item in items:
        query: dict[str, str | int] = {
            "collection": collection,
            "kind": KIND,
            "filename": item.source.name,
            "tile_size": item.tile_size,
        }
        if base_only:
            query["base_only"] = "true"
        url = client.build_request("POST", "/images", params=query).url
        size = item.source.stat().st_size
        if dry_run or verbose:
            typer.echo(
                f"{'would upload' if dry_run else 'uploading'} {item.source} ({item.reader}, {item.width} x "
                f"{item.height}, {size:,} bytes) to {url}; tile size {item.tile_size} ({item.tile_from})"
            )
        if dry_run:
            continue
        # -o: a fresh idempotency key, so that the same file is converted again (as a new image)
        extra = {"Idempotency-Key": uuid.uuid4().hex} if overwrite else {}
        with open(item.source, "rb") as body:
            answer = _answer(
                _request(client, "POST", "/images", params=query, content=_chunks(body), headers=extra),
                str(item.source),
            )
        image, job = answer["image"], answer["job"]
        if wait and job["state"] not in FINISHED:
            job = _follow(client, job["id"], item.source.name)
        if job["state"] in ("failed", "cancelled"):
            raise ServerError(f"{item.source}: the server's job {job['id']} {job['state']}: {job['error']}", 400)
        typer.echo(f"uploaded {item.source} to {server}: image {image['id']} in {collection}, job {job['state']}")


def _chunks(body: Any, size: int = 2**20) -> Iterator[bytes]:
    """The file in chunks: streamed, never read whole into memory."""
    while chunk := body.read(size):
        yield chunk


def _request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    import httpx  # lazy: only an upload to a server needs an HTTP client

    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise InputError(f"cannot reach {client.base_url}: {exc}") from None


def _answer(response: httpx.Response, what: str) -> Any:
    """The JSON of a success; `ServerError` with the server's own one-line reason otherwise."""
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ServerError(f"{what}: the server answered {response.status_code}: {detail}", response.status_code)


def _follow(client: httpx.Client, job_id: str, label: str) -> dict[str, Any]:
    """Poll the job until it ends, drawing its progress (as `submit --wait` does)."""
    from tilewright.jobs.models import FINISHED  # lazy: SQLAlchemy

    with progress_bar(f"{label} on the server", enabled=True) as progress:
        while True:
            job = _answer(_request(client, "GET", f"/jobs/{job_id}"), f"job {job_id}")
            progress(job["progress"], f"{job['state']}: {job['stage']}")
            if job["state"] in FINISHED:
                return job
            time.sleep(POLL_SECONDS)
