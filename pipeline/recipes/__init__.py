"""Dataset recipes: one file per source dataset, registered by the name users type.

A recipe is a plain function ``prepare_<name>(corpus_dir, ...) -> RecipeResult`` that lists the
dataset's media items as :class:`~pipeline.manifest.ManifestRow` objects and reports every
listed item it could not use as a :class:`~pipeline.manifest.Failure`.
"""

from __future__ import annotations

import inspect
from typing import Callable

from ..manifest import RecipeResult

RECIPES: dict[str, Callable[..., RecipeResult]] = {}


def register(name: str):
    def wrap(fn):
        if name in RECIPES:
            raise ValueError(f"Recipe {name!r} is registered twice")
        RECIPES[name] = fn
        return fn

    return wrap


def get_recipe(name: str) -> Callable[..., RecipeResult]:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown recipe {name!r}; valid recipes: {', '.join(sorted(RECIPES))}") from None


def recipe_options(name: str) -> list[str]:
    """Keyword options a recipe accepts (besides the corpus directory)."""
    params = list(inspect.signature(get_recipe(name)).parameters.values())[1:]
    return [p.name for p in params]


def prepare(name: str, corpus_dir, **options) -> RecipeResult:
    """Run recipe ``name`` on ``corpus_dir``; options it does not take are an error."""
    allowed = recipe_options(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"Recipe {name!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(allowed) or 'none'}"
        )
    return get_recipe(name)(corpus_dir, **given)


# Import the recipe modules so that they register themselves.
from . import asvspoof2019_la, dfdc, fakeavceleb, ffpp, folder, in_the_wild, voxceleb  # noqa: E402,F401
