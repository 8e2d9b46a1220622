"""What a recipe is: the TOML schema (pydantic), the parsed `Recipe`/`Output`, and `parse_recipe`.

name = "web"
description = "..."
metadata = "metadata.json"          # or "" for none

[[outputs]]
name = "small"                     # the file is small.jpg (small_0.jpg ... if the chain splits)
ops = ["thumbnail=150x150", "flatten=white", { op = "blur", sigma = 1 }]
format = "jpeg"                    # jpeg | png | webp | avif | tiff
quality = 85
chroma = "420"                     # JPEG colour subsampling: auto (libvips: 4:4:4 from quality 90) | 420 | 444
when = "always"                    # always | slide | image (a flat, single-level file)
blob = "thumbnails/small/{path}"   # where an event's run puts it (see "Blob layout" below)

[[outputs]]
name = "pyramid"
kind = "dzi"                       # a Deep Zoom pyramid of the full image
when = "slide"

Blob layout: when every output names its `blob` (and `metadata_blob` names the metadata's), a run on a blob
(`TILEWRIGHT_EVENT_RECIPE`: events and `watch`) uploads each output to that key of the output store, instead
of one folder; the fields are the output template's (`{container}`, `{path}`, `{dir}`, `{name}`, `{stem}`,
`{etag}`). `metadata_style = "azure-functions"` writes the metadata document the Azure Functions Pillow
pipeline wrote (`original_size`, `file_size_bytes`, one entry per output with the fields its `record` lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError
from tilewright.imaging.image_formats import FormatName
from tilewright.ops import OperationError, Step, parse_chain

FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: what metadata.json looks like: tilewright's own document, or the Azure Functions Pillow pipeline's keys
MetadataStyle = Literal["tilewright", "azure-functions"]
#: what an output's entry in an "azure-functions" metadata document holds
RecordField = Literal["size", "file_size_bytes", "compression_ratio"]
#: the fields of a blob layout's templates (as the output template's)
BLOB_FIELDS = {"container": "c", "path": "p", "dir": "d", "name": "n", "stem": "s", "etag": "e"}


class RecipeError(InputError):
    """A recipe cannot be found or is invalid (bad TOML, unknown field, bad operation)."""


class _OutputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FILE_NAME)
    ops: list[str | dict[str, Any]] = Field(default_factory=list)
    format: FormatName | None = None
    quality: int | None = Field(None, ge=1, le=100)
    chroma: Literal["auto", "420", "444"] | None = None
    kind: Literal["image", "dzi"] = "image"
    when: Literal["always", "slide", "image"] = "always"
    blob: str | None = Field(None, min_length=1, max_length=1000)
    record: list[RecordField] | None = None


class _RecipeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    metadata: str = Field("metadata.json", pattern=r"^$|" + FILE_NAME)
    metadata_style: MetadataStyle = "tilewright"
    metadata_blob: str | None = Field(None, min_length=1, max_length=1000)
    outputs: list[_OutputModel] = Field(min_length=1)


@dataclass
class Output:
    name: str
    steps: list[Step]
    kind: str = "image"
    when: str = "always"
    blob: str | None = None  # the blob layout's key template
    record: tuple[str, ...] = ("size", "file_size_bytes")  # its "azure-functions" metadata entry (empty: none)

    def applies_to(self, is_slide: bool) -> bool:
        return self.when == "always" or (self.when == "slide") == is_slide


@dataclass
class Recipe:
    name: str
    outputs: list[Output]
    description: str = ""
    metadata: str = "metadata.json"
    source: str = "<memory>"
    metadata_style: str = "tilewright"
    metadata_blob: str | None = None

    @property
    def has_layout(self) -> bool:
        """Whether a run on a blob puts each output at its own key (`blob`) rather than in one folder."""
        return any(output.blob for output in self.outputs)


def parse_recipe(
    data: dict[str, Any], name: str | None = None, *, settings: Settings | None = None, source: str = "<memory>"
) -> Recipe:
    """Check a recipe (as read from TOML or JSON) and parse every chain; `RecipeError` if anything is wrong."""
    settings = settings or get_settings()
    try:
        model = _RecipeModel.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise RecipeError(f"recipe {name or model_name(data)}: {where}: {error['msg']}", path=_path(source)) from None
    recipe_name = name or model.name or "recipe"
    defaults = {"watermark": {"text": settings.watermark_text, "font": settings.watermark_font}}
    outputs, seen = [], set()
    for spec in model.outputs:
        if spec.name in seen or spec.name == model.metadata:
            raise RecipeError(f"recipe {recipe_name}: output name {spec.name!r} is used twice", path=_path(source))
        seen.add(spec.name)
        if spec.kind == "dzi":
            if spec.ops or spec.format or spec.quality or spec.chroma or spec.blob:
                raise RecipeError(
                    f"recipe {recipe_name}: output {spec.name!r}: a dzi output takes no ops, format, "
                    "quality, chroma or blob (tiles use TILEWRIGHT_TILE_FORMAT and TILEWRIGHT_QUALITY)",
                    path=_path(source),
                )
            outputs.append(Output(spec.name, [], "dzi", spec.when))
            continue
        if spec.chroma and spec.format not in ("jpeg", "jpg"):
            raise RecipeError(
                f'recipe {recipe_name}: output {spec.name!r}: chroma is a JPEG setting: it needs format = "jpeg"',
                path=_path(source),
            )
        chain: list[Any] = list(spec.ops)
        if spec.format:
            chain.append({"op": "format", "format": spec.format, **({"chroma": spec.chroma} if spec.chroma else {})})
        if spec.quality:
            chain.append({"op": "quality", "quality": spec.quality})
        try:
            steps = parse_chain(chain, defaults)
        except OperationError as exc:
            raise RecipeError(f"recipe {recipe_name}: output {spec.name!r}: {exc}", path=_path(source)) from None
        record = Output.record if spec.record is None else tuple(spec.record)
        outputs.append(Output(spec.name, steps, "image", spec.when, spec.blob, record))
    _check_layout(model, recipe_name, source)
    return Recipe(
        recipe_name, outputs, model.description, model.metadata, source, model.metadata_style, model.metadata_blob
    )


def _check_layout(model: _RecipeModel, recipe_name: str, source: str) -> None:
    """A blob layout names every output's blob (and the metadata's) or none; its templates use known fields;
    `record` is a field of the "azure-functions" metadata document only."""

    def fail(message: str) -> RecipeError:
        return RecipeError(f"recipe {recipe_name}: {message}", path=_path(source))

    if model.metadata_style != "azure-functions" and any(spec.record is not None for spec in model.outputs):
        raise fail('record is a field of metadata_style = "azure-functions"')
    templates = {spec.name: spec.blob for spec in model.outputs}
    if model.metadata:
        templates[model.metadata] = model.metadata_blob
    elif model.metadata_blob:
        raise fail('metadata_blob needs a metadata file (metadata = "")')
    missing = [name for name, blob in templates.items() if not blob]
    if len(missing) == len(templates):
        return
    if missing:
        raise fail(f"a blob layout names the blob of every output and of the metadata; none for {', '.join(missing)}")
    for name, blob in templates.items():
        try:
            (blob or "").format(**BLOB_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise fail(f"{name}: bad blob template {blob!r} (fields: {', '.join(BLOB_FIELDS)}): {exc}") from None


def model_name(data: Any) -> str:
    return str(data.get("name", "?")) if isinstance(data, dict) else "?"


def _path(source: str) -> str | None:
    return None if source.startswith("<") else source


def chain_recipe(
    ops: Sequence[str | dict[str, Any]],
    name: str,
    fmt: str | None = None,
    quality: int | None = None,
    settings: Settings | None = None,
) -> Recipe:
    """A one-output recipe from an ad-hoc chain (what `tilewright process --op ...` runs)."""
    data: dict[str, Any] = {"name": "chain", "outputs": [{"name": name, "ops": list(ops)}]}
    if fmt:
        data["outputs"][0]["format"] = fmt
    if quality:
        data["outputs"][0]["quality"] = quality
    return parse_recipe(data, "chain", settings=settings)
