"""`tilewright import`: find the files under a folder, skip the ones already converted, convert the rest.

`run_one` runs in a worker process and never raises: it returns an outcome dict,
so one bad file cannot stop the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tilewright.convert import convert
from tilewright.errors import TilewrightError
from tilewright.formats import accepted_suffixes
from tilewright.outputs import WRITERS, WriteOptions
from tilewright.staging import STAGING_PREFIX


def output_for(source: Path, root: Path, outdir: Path) -> Path:
    """OUTDIR/<path of source relative to root, without its extension>."""
    relative = source.relative_to(root)
    return outdir / relative.parent / relative.name.split(".")[0]


def plan_import(
    root: Path, outdir: Path, kind: str, options: WriteOptions
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(files to convert with their outputs, files skipped because their output is finished); `root` is a
    folder, or one file (its output then goes straight into `outdir`)."""
    todo, skipped = [], []
    suffixes = accepted_suffixes()  # what some reader declares: others are not images (README.txt, ...)
    outdir_resolved = outdir.resolve()
    sources = [root] if root.is_file() else sorted(root.rglob("*"))
    root = root.parent if root.is_file() else root
    for source in sources:
        if not source.is_file() or any(part.startswith(".") for part in source.relative_to(root).parts):
            continue
        if outdir_resolved in source.resolve().parents or STAGING_PREFIX in source.name:
            continue
        if source.suffix.lower() not in suffixes:
            continue
        output = output_for(source, root, outdir)
        writer = WRITERS[kind](output, options)
        if writer.final_paths()[-1].exists() and not options.overwrite:
            skipped.append(source)
        else:
            todo.append((source, output))
    return todo, skipped


def run_one(source: Path, output: Path, kind: str, options: WriteOptions) -> dict[str, Any]:
    """Convert one file; an outcome dict (`ok`, and the result or the error), never an exception."""
    try:
        result = convert(source, output, kind, options=options)
    except TilewrightError as exc:
        return {"ok": False, "source": str(source), "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the summary, never a crash of the whole import
        return {"ok": False, "source": str(source), "error": f"{source}: internal error: {type(exc).__name__}: {exc}"}
    return {"ok": True, **result.to_dict()}
