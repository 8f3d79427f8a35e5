"""MovieLens 100K read from the folder a user gives (its license forbids redistribution, so the
project never ships it): ``u.data`` (events), ``u.item`` (films with genres), ``u.user`` (age,
gender, occupation, zip code). :func:`find_movielens_100k` detects the folder by those file
names; ``TASTEMAP_ML100K`` names the folder when no path is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tastemap.errors import InputError
from tastemap.runtime.io.events import EventColumns, validate_catalog, validate_events
from tastemap.runtime.io.users import UserAttributes, users_from_frame

FILES = ("u.data", "u.item", "u.user")
ENV_VAR = "TASTEMAP_ML100K"
DEFAULT_FOLDER = Path("/work/shared/data/movielens-100k")
_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
           "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


@dataclass(frozen=True)
class MovieLens100K:
    """``events`` and ``catalog`` validated as :func:`~tastemap.runtime.io.events.read_events` and
    :func:`~tastemap.runtime.io.events.read_catalog` return them (weight = stars / 5; genres as
    one-level categories) and ``users`` (age, gender, occupation, zip_code)."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    users: UserAttributes


def is_movielens_100k(folder: str | Path) -> bool:
    """Whether ``folder`` holds MovieLens 100K's own files."""
    return all((Path(folder) / name).is_file() for name in FILES)


def find_movielens_100k(folder: str | Path | None = None) -> Path | None:
    """``folder``, else ``$TASTEMAP_ML100K``, else the shared data folder, when it holds the files
    (None when no candidate does; a ``folder`` given but lacking them is an error)."""
    if folder is not None:
        if not is_movielens_100k(folder):
            missing = [name for name in FILES if not (Path(folder) / name).is_file()]
            raise InputError(f"{folder}: not a MovieLens 100K folder (missing {missing}); give the folder that "
                             "holds u.data, u.item and u.user (https://grouplens.org/datasets/movielens/100k/)")
        return Path(folder)
    for candidate in (os.environ.get(ENV_VAR), DEFAULT_FOLDER):
        if candidate and is_movielens_100k(candidate):
            return Path(candidate)
    return None


def read_movielens_100k(folder: str | Path) -> MovieLens100K:
    """Read the three files of the MovieLens 100K ``folder``."""
    folder = find_movielens_100k(folder)
    events = pd.read_csv(folder / "u.data", sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"])
    items = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1",
                        names=["item_id", "title", "release", "video", "url", *_GENRES])
    genres = items[list(_GENRES)].to_numpy(bool)
    catalog = pd.DataFrame({"item_id": items["item_id"], "title": items["title"].astype(str),
                            "categories": ["|".join(g for g, on in zip(_GENRES, row) if on) for row in genres]})
    users = pd.read_csv(folder / "u.user", sep="|", header=None, dtype=str,
                        names=["user_id", "age", "gender", "occupation", "zip_code"], keep_default_na=False)
    users["user_id"] = users["user_id"].astype(int)
    return MovieLens100K(events=validate_events(events, EventColumns(rating="rating", rating_scale=5.0),
                                                source=str(folder / "u.data")),
                         catalog=validate_catalog(catalog, source=str(folder / "u.item")),
                         users=users_from_frame(users, source=folder / "u.user"))
