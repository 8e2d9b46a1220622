"""`convert`: one image or slide to DZI, TIFF or IIIF at OUTPUT_ROOT/COLLECTION/ID/ (and the output store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.params import Collection, OutputKind, content_hash
from tilewright.jobs.publish import describe_input, output_store, output_urls, publish_to_store, store_prefix
from tilewright.outputs import WriteOptions
from tilewright.outputs.iiif import served_id
from tilewright.paths import allowed_input
from tilewright.staging import publish_dir

TileFormat = Literal["jpeg", "png", "webp"]


def _number(name: str, low: int, high: int) -> Callable[[Any], int | None]:
    """A writer option given as a number or a string of one ("256": the CLI and query strings send strings)."""

    def check(value: Any) -> int | None:
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad convert option: {exc}") from None
        if not low <= number <= high:
            raise ValueError(f"convert option {name} must be between {low} and {high}, not {number}")
        return number

    return check


def _tile_format(value: Any) -> Any:
    if value is not None and value not in get_args(TileFormat):
        raise ValueError(f"unknown tile_format {value!r}")
    return value


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="a path inside an input root")
    kind: OutputKind = "dzi"
    collection: Collection = "default"
    image_id: str | None = None
    tile_size: Annotated[int | None, BeforeValidator(_number("tile_size", 16, 8192))] = None
    overlap: Annotated[int | None, BeforeValidator(_number("overlap", 0, 64))] = None
    tile_format: Annotated[TileFormat | None, BeforeValidator(_tile_format)] = None
    quality: Annotated[int | None, BeforeValidator(_number("quality", 1, 100))] = None
    base_only: bool | None = None
    iiif_id: str | None = None

    @field_validator("base_only", mode="before")
    @classmethod
    def _yes(cls, value: object) -> bool | None:
        """A query-string style flag: "1", "true", "yes" (any case) or true are on; anything else is off."""
        return None if value is None else str(value).lower() in ("1", "true", "yes")

    def options(self, settings: Settings) -> WriteOptions:
        """The writer options (the settings fill what is not given); InputError for a combination the
        writer refuses (a TIFF tile size that is not a multiple of 16)."""
        return make_options(
            self.kind,
            settings,
            tile_size=self.tile_size,
            overlap=self.overlap,
            tile_format=self.tile_format,
            quality=self.quality,
            base_only=bool(self.base_only),
            iiif_id=self.iiif_id,
        )


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    source = allowed_input(params.input, settings)
    params.options(settings)  # bad option values fail now, not in the worker
    clean = {
        **params.model_dump(exclude_unset=True),
        "input": str(source),
        "kind": params.kind,
        "collection": params.collection,
    }
    return clean, content_hash(source)


def run(ctx: TaskContext) -> dict[str, Any]:
    """Convert into the work directory; publish to the object store when `output_store` is set (manifest
    last), then at OUTPUT_ROOT/COLLECTION/ID/ (the local copy stays: `/outputs/` and the tile server read it)."""
    params, settings = Params.model_validate(ctx.params), ctx.settings
    target_id = params.image_id or ctx.job_id
    final = settings.resolved_output_root() / params.collection / target_id
    location = output_store(settings)  # a bad output_store fails before converting, not after
    if params.kind == "iiif" and not params.iiif_id:
        params = params.model_copy(update={"iiif_id": served_id(final / "slide", settings)})
    options = params.options(settings)
    staged = ctx.work_dir / "out"
    staged.mkdir(parents=True)
    share = 1.0 if location is None else 0.8  # the rest of the bar is the upload
    result = convert(
        params.input,
        staged / "slide",
        params.kind,
        options=options,
        settings=settings,
        progress=lambda fraction, stage: ctx.progress(share * fraction, stage),
        cancelled=ctx.cancelled,
    )
    outputs = result.to_dict()
    if location is not None:
        store, base = location
        outputs["store"] = publish_to_store(
            ctx,
            store,
            store_prefix(base, params.collection, target_id),
            staged,
            source=describe_input(Path(params.input)),
            extra={
                "image_id": target_id,
                "collection": params.collection,
                "kind": params.kind,
                "width": result.width,
                "height": result.height,
                "levels": result.levels,
                "tiles": result.tiles,
            },
            start=share,
        )
    publish_dir(staged, final)
    paths = [str(final / Path(p).relative_to(staged)) for p in result.paths]
    outputs.update(
        output=str(final / Path(result.output).relative_to(staged)),
        paths=paths,
        urls=output_urls(paths, settings),
    )
    return outputs


TASK = Task(Params, check, run, "convert one image or slide to dzi/tiff/iiif", as_sent=True)
