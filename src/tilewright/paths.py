"""The one path-sandbox rule: a path given by a user is used only if it resolves inside a configured root.

Jobs (`convert`, `import`, `recipe`, `process` inputs) and object-store URLs (`file://` and plain paths of
events and `watch`) ask the same question of the same roots: the input roots, the upload folder and the
local storage root. Symlinks are followed before the test, so a link cannot lead outside.
"""

from __future__ import annotations

from pathlib import Path

from tilewright.config import Settings
from tilewright.errors import InputError, InputNotFoundError, OutsideRootsError


def readable_roots(settings: Settings) -> list[Path]:
    """Folders whose files a user may name (resolved): the storage root, `INPUT_ROOTS`, the upload folder.

    In this order: a file in two of them (an input root inside the storage root) is keyed from the first,
    so a store URL names the same key (and the same output folder) as it always did."""
    return [settings.resolved_storage_root(), *input_roots(settings), settings.resolved_upload_dir()]


def input_roots(settings: Settings) -> list[Path]:
    """`INPUT_ROOTS`, each as the rule reads it: `~` expanded, symlinks resolved."""
    return [Path(root).expanduser().resolve() for root in settings.input_roots]


def root_of(path: Path, roots: list[Path]) -> Path | None:
    """The first of `roots` that `path` (already resolved) lies in, or is; None when it is inside none of them."""
    return next((root for root in roots if path == root or root in path.parents), None)


def resolve(path: str | Path, base: Path | None = None) -> Path:
    """A path someone sent, resolved as the sandbox rule reads it: `~` expanded, relative to `base` when given,
    symlinks followed. InputError for a NUL byte, which no file name has (the OS call would raise ValueError)."""
    if "\x00" in str(path):
        raise InputError(f"path {str(path)[:200]!r} contains a NUL byte")
    given = Path(path).expanduser()
    return (base / given if base is not None and not given.is_absolute() else given).resolve()


def allowed_input(path: str | Path, settings: Settings) -> Path:
    """The resolved input path if it lies inside a readable root (else `OutsideRootsError`, 403) and exists
    (else `InputNotFoundError`, 404)."""
    resolved = resolve(path)
    if root_of(resolved, readable_roots(settings)) is None:
        raise OutsideRootsError(
            f"input path {str(path)!r} is outside the configured input roots (TILEWRIGHT_INPUT_ROOTS)"
        )
    if not resolved.exists():
        raise InputNotFoundError(f"input path {str(path)!r} does not exist")
    return resolved
