"""What a recipe run says about itself: `metadata.json` (the source, every output made) and its pieces."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyvips

from tilewright.ops import Source
from tilewright.recipes.context import RecipeRun

#: libvips' loader names -> Pillow's `Image.format` where they differ by more than case
PILLOW_FORMATS = {"jp2k": "JPEG2000"}


def ratio(original: int, written: int) -> float:
    """Compression ratio against the original: original bytes / output bytes (2.0: half the size)."""
    return round(original / written, 4) if written else 0.0


def write_metadata(run: RecipeRun) -> None:
    assert run.source is not None and run.staging is not None
    run.metadata = functions_document(run) if run.recipe.metadata_style == "azure-functions" else document(run)
    path = run.staging / run.recipe.metadata
    path.write_text(json.dumps(run.metadata, indent=2) + "\n", encoding="utf-8")


def document(run: RecipeRun) -> dict[str, Any]:
    """tilewright's metadata.json: the source, and every file made in recipe order."""
    assert run.source is not None
    source = run.source
    return {
        "filename": run.source_path.name,
        "width": source.width,
        "height": source.height,
        "size": [source.width, source.height],
        "format": source.reader.format,
        "mode": image_mode(source),
        "bytes": run.original_bytes,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "recipe": run.recipe.name,
        "slide": source.is_slide,
        "outputs": _in_recipe_order(run),
    }


def functions_document(run: RecipeRun) -> dict[str, Any]:
    """The document the Azure Functions Pillow pipeline wrote to `metadata/{name}.json`, key for key: the
    source in Pillow's words (`original_size`, `format` "JPEG", `mode`, `file_size_bytes`, a naive UTC
    `processed_at`), then one entry per file made, named after its output, with the fields its `record` lists
    (that pipeline recorded `size` and `file_size_bytes`, and the optimised copy's `compression_ratio` to 2
    places; its watermarked copy not at all)."""
    assert run.source is not None
    source = run.source
    doc: dict[str, Any] = {
        "filename": run.source_path.name,
        "original_size": [source.width, source.height],
        "format": PILLOW_FORMATS.get(source.reader.format, source.reader.format.upper()),
        "mode": image_mode(source),
        "file_size_bytes": run.original_bytes,
        "processed_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
    }
    record = {output.name: output.record for output in run.recipe.outputs}
    for entry in _in_recipe_order(run):
        fields = record.get(entry["name"], ())
        if not fields:
            continue
        values = {
            "size": entry["size"],
            "file_size_bytes": entry["bytes"],
            "compression_ratio": round(run.original_bytes / entry["bytes"], 2) if entry["bytes"] else 0.0,
        }
        doc[Path(entry["file"]).stem] = {field: values[field] for field in fields}
    return doc


def _in_recipe_order(run: RecipeRun) -> list[dict[str, Any]]:
    order = {output.name: number for number, output in enumerate(run.recipe.outputs)}
    return sorted(run.entries, key=lambda entry: order.get(entry["name"], len(order)))


def image_mode(source: Source) -> str:
    """The source's pixel layout in Pillow's words: L, LA, RGB, RGBA, P, CMYK, I;16, RGB;16 ..."""
    header = source.header()
    if header is None:  # slides: the bands the reader reports
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(source.reader.bands, f"{source.reader.bands} bands")
    return pil_mode(header)


def pil_mode(image: pyvips.Image) -> str:
    fields = image.get_fields()
    if image.interpretation == "cmyk":
        return "CMYK"
    if "palette" in fields or "palette-bit-depth" in fields:
        try:
            if image.get("palette") if "palette" in fields else True:
                return "P" if not image.hasalpha() else "PA"
        except pyvips.Error:
            pass
    base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(image.bands, f"{image.bands} bands")
    if "bits-per-sample" in fields and image.get("bits-per-sample") == 1 and image.bands == 1:
        return "1"
    if image.format in ("ushort", "short"):
        return "I;16" if image.bands == 1 else f"{base};16"
    if image.format in ("float", "double"):
        return "F" if image.bands == 1 else f"{base};F"
    if image.format in ("uint", "int"):
        return "I" if image.bands == 1 else f"{base};32"
    return base


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
