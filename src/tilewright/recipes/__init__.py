"""Recipes: a named list of outputs, each a chain of operations plus a format, read from TOML.

`run_recipe(source, outdir, recipe)` opens the source once (limits checked), makes every
output into a private staging folder beside OUTDIR, writes `metadata.json`, and only then
publishes: a failed, cancelled or timed-out run leaves nothing at OUTDIR. The built-in
recipes live in `tilewright/builtin_recipes/`; user recipes in `Settings.recipe_dir`
(same name: the user's wins).

    schema.py      the TOML schema, `Recipe`/`Output`, `parse_recipe`, `chain_recipe`
    catalogue.py   finding recipes by name or path
    plan.py        lanes of image outputs, and whether to decode the source once
    lanes.py       making the image outputs, lanes side by side
    metadata.py    metadata.json
    context.py     one run's state
    run.py         `run_recipe`: the steps of a run, publishing
"""

from tilewright.recipes.catalogue import BUILTIN_DIR, list_recipes, load_recipe, recipe_dirs
from tilewright.recipes.metadata import pil_mode
from tilewright.recipes.run import run_recipe
from tilewright.recipes.schema import Output, Recipe, RecipeError, chain_recipe, parse_recipe

__all__ = [
    "BUILTIN_DIR",
    "Output",
    "Recipe",
    "RecipeError",
    "chain_recipe",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "pil_mode",
    "recipe_dirs",
    "run_recipe",
]
