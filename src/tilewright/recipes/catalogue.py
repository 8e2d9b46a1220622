"""Finding recipes: the built-in ones (`builtin_recipes/`), the user's (`Settings.recipe_dir`), by name or path."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tilewright.config import Settings, get_settings
from tilewright.recipes.schema import Recipe, RecipeError, parse_recipe

BUILTIN_DIR = Path(__file__).parent.parent / "builtin_recipes"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def recipe_dirs(settings: Settings | None = None) -> list[Path]:
    """Where recipes are looked up, first match wins: the configured folder, then the built-in ones."""
    settings = settings or get_settings()
    dirs = [Path(settings.recipe_dir)] if settings.recipe_dir else []
    return dirs + [BUILTIN_DIR]


def list_recipes(settings: Settings | None = None) -> dict[str, Path]:
    """Every recipe name known, with the file it comes from."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs(settings):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def load_recipe(name: str | Path | None = None, settings: Settings | None = None) -> Recipe:
    """A recipe by name (looked up in the recipe folders) or by the path of a TOML file.

    Names are plain words (letters, digits, `-`, `_`): an upload naming its recipe
    cannot reach outside the recipe folders.
    """
    settings = settings or get_settings()
    name = name or settings.default_recipe
    text = str(name)
    if isinstance(name, Path) or text.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise RecipeError("no such recipe file", path=path)
        return _read(path, path.stem, settings)
    if not _NAME.match(text):
        raise RecipeError(f"recipe names are letters, digits, - and _, not {text!r}")
    known = list_recipes(settings)
    if text not in known:
        raise RecipeError(f"unknown recipe {text!r}; known: {', '.join(known) or 'none'}")
    return _read(known[text], text, settings)


def _read(path: Path, name: str, settings: Settings) -> Recipe:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe: {exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe is not valid TOML: {exc}", path=path) from exc
    return parse_recipe(data, name, settings=settings, source=str(path))
