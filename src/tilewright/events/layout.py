"""Where a recipe run on a blob puts its outputs: the recipe's blob layout (`blob`, `metadata_blob`; see
`recipes.schema`) rendered for one blob, and the key prefixes it writes under (blobs there never make jobs).

`TILEWRIGHT_EVENT_RECIPE` names the recipe; empty, events make a Deep Zoom pyramid at the output template.
"""

from __future__ import annotations

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.recipes import Recipe, load_recipe
from tilewright.storage.keys import join_key, key_parts


def event_recipe(settings: Settings) -> Recipe | None:
    """The recipe events and watchers run (`TILEWRIGHT_EVENT_RECIPE`), or None: they convert to Deep Zoom."""
    return load_recipe(settings.event_recipe, settings) if settings.event_recipe else None


def templates(recipe: Recipe) -> dict[str, str]:
    """Output name (the metadata's file name for the metadata) -> its blob template; empty without a layout."""
    found = {output.name: output.blob for output in recipe.outputs if output.blob}
    if recipe.metadata and recipe.metadata_blob:
        found[recipe.metadata] = recipe.metadata_blob
    return found


def blob_keys(recipe: Recipe, key: str, etag: str, base: str = "") -> dict[str, str]:
    """Output name -> the key its file goes to, for the blob at `key`, under `base` of the output store."""
    fields = {**key_parts(key), "etag": etag.strip('"')}
    keys = {}
    for name, template in templates(recipe).items():
        rendered = join_key(base, template.format(**fields))
        if "/" not in rendered:
            raise InputError(f"recipe {recipe.name}: the blob template {template!r} of {name} names no container")
        keys[name] = rendered
    return keys


def written_prefixes(recipe: Recipe, base: str = "") -> list[str]:
    """The literal folders the layout writes under (`thumbnails/small/`, `metadata/`): what they hold is ours.

    A template that starts with a field (`{container}/...`) has none: its outputs are told apart by name only."""
    prefixes = []
    for template in templates(recipe).values():
        literal = template.split("{", 1)[0]
        folder = literal.rpartition("/")[0]
        if folder:
            prefixes.append(join_key(base, folder) + "/")
    return prefixes
