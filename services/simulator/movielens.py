"""MovieLens-100K as a stream of ratings: what a client would have sent to serving, in time order.

The files ship inside the ``recbole`` wheel on PyPI (``recbole/dataset_example/ml-100k/``:
``ml-100k.inter``, ``.user``, ``.item``, tab-separated, each header cell ``name:type``). ``fetch``
downloads the wheel once with pip (no dependency on recbole: only the three files are read),
checks their SHA-256 and keeps them under the stack's cache dir, so a second run reads them
from disk. ``parse`` joins them into ``Rating``s sorted by timestamp (ties keep file order).

A rating is one ``POST /v1/predict`` with one candidate (``Rating.body``): the user's
attributes and the hour are the request's ``context``, the movie's attributes the candidate's
``features``; ``Rating.features`` is exactly the dict serving logs for it
(``services.serving.scoring.model_features``). The label is ``rating >= 4`` (55 % of the
ratings). Feature values:

- ``age`` (int), ``gender``, ``occupation`` (str): the user file; ``hour`` (int, 0..23): the
  UTC hour of the timestamp;
- ``release_year`` (int): absent for the one movie whose year is ``unkonwn`` (sic) in the file;
- genres: one boolean key per genre the movie has, ``genre_<name>: True`` (``genre_drama``,
  ``genre_childrens``, ``genre_sci_fi``), absent otherwise. A flat dict cannot hold a list;
  multi-hot keeps each genre one shared weight for every movie that has it (a comedy-drama
  learns from comedies and from dramas), where a joined string (``"Comedy|Drama"``) would be a
  category of its own, unrelated to either.

Example:
    >>> tables = {"inter": "user_id:token\\titem_id:token\\trating:float\\ttimestamp:float\\n"
    ...                    "7\\t50\\t4\\t881250949\\n7\\t60\\t2\\t881250900\\n",
    ...           "user": "user_id:token\\tage:token\\tgender:token\\toccupation:token\\n"
    ...                   "7\\t24\\tM\\ttechnician\\n",
    ...           "item": "item_id:token\\tmovie_title:token_seq\\trelease_year:token\\t"
    ...                   "class:token_seq\\n50\\tStar Wars\\t1977\\tAction Sci-Fi\\n"
    ...                   "60\\tunkonwn\\tunkonwn\\tunknown\\n"}
    >>> first, second = parse(tables)
    >>> first.ts_ms, first.label, first.features()
    (881250900000, 0, {'age': 24, 'gender': 'M', 'occupation': 'technician', 'hour': 15, \
'genre_unknown': True, 'user_id': '7', 'item_id': '60'})
    >>> second.label, second.body()["candidates"][0]["features"]
    (1, {'release_year': 1977, 'genre_action': True, 'genre_sci_fi': True})
"""

from __future__ import annotations

import hashlib
import re
import subprocess  # noqa: S404 - pip is how the data reach us
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator.world import SimulatorError
from streams.schemas import FeatureValue

WHEEL: Final = "recbole==1.2.1"
MEMBER_DIR: Final = "recbole/dataset_example/ml-100k"
# The files this benchmark was measured on; anything else is refused rather than measured.
SHA256: Final = {
    "inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
LIKED: Final = 4.0  # a rating at or above this is a positive label
UNKNOWN_YEAR: Final = "unkonwn"  # the file's own spelling


class DatasetError(SimulatorError):
    """The dataset could not be fetched, or its files are not the ones expected."""


@dataclass(frozen=True, slots=True)
class Rating:
    """One rating as a request to serving and its label.

    Attributes:
        ts_ms: When it was rated (epoch milliseconds).
        user_id, item_id: The request's user and its one candidate.
        rating: 1..5 stars.
        context: The request's ``context``: the user's attributes and the hour.
        item: The candidate's ``features``: the movie's attributes.
    """

    ts_ms: int
    user_id: str
    item_id: str
    rating: float
    context: Mapping[str, FeatureValue]
    item: Mapping[str, FeatureValue]

    @property
    def label(self) -> int:
        """1 when the user liked the movie (``rating >= LIKED``)."""
        return int(self.rating >= LIKED)

    def body(self) -> dict[str, Any]:
        """The ``POST /v1/predict`` body: one candidate."""
        return {"user_id": self.user_id, "context": dict(self.context),
                "candidates": [{"item_id": self.item_id, "features": dict(self.item)}]}

    def features(self) -> dict[str, FeatureValue]:
        """What serving scores and logs for ``body()`` (``model_features``)."""
        return model_features(PredictRequest.model_validate(self.body()))[0]


def read_table(text: str) -> list[dict[str, str]]:
    """Rows of a RecBole atomic file as ``{name: raw value}``, the header's ``:type`` dropped.

    Example:
        >>> read_table("user_id:token\\tage:token\\n1\\t24\\n")
        [{'user_id': '1', 'age': '24'}]
    """
    lines = text.splitlines()
    if not lines:
        raise DatasetError("empty table")
    names = [cell.split(":", 1)[0] for cell in lines[0].split("\t")]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(names):
            raise DatasetError(f"line {number}: {len(cells)} cells, header has {len(names)}")
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def genre_key(genre: str) -> str:
    """The feature key of one genre: ``genre_`` and its name in lower case, letters and digits
    kept, any other run of characters an underscore (apostrophes dropped).

    Example:
        >>> genre_key("Children's"), genre_key("Film-Noir"), genre_key("Sci-Fi")
        ('genre_childrens', 'genre_film_noir', 'genre_sci_fi')
    """
    name = re.sub(r"[^a-z0-9]+", "_", genre.lower().replace("'", "")).strip("_")
    return f"genre_{name}"


def user_context(row: Mapping[str, str]) -> dict[str, FeatureValue]:
    """A user's attributes as request context (the hour is added per rating).

    Example:
        >>> user_context({"user_id": "1", "age": "24", "gender": "M", "occupation": "writer",
        ...               "zip_code": "85711"})
        {'age': 24, 'gender': 'M', 'occupation': 'writer'}
    """
    return {"age": int(row["age"]), "gender": row["gender"], "occupation": row["occupation"]}


def item_features(row: Mapping[str, str]) -> dict[str, FeatureValue]:
    """A movie's attributes as candidate features: its release year when known, one boolean
    per genre.

    Example:
        >>> item_features({"item_id": "1", "release_year": "1995", "class": "Comedy Drama"})
        {'release_year': 1995, 'genre_comedy': True, 'genre_drama': True}
    """
    out: dict[str, FeatureValue] = {}
    year = row.get("release_year", UNKNOWN_YEAR)
    if year.isdigit():
        out["release_year"] = int(year)
    for genre in row.get("class", "").split():
        out[genre_key(genre)] = True
    return out


def hour_of(ts_ms: int) -> int:
    """The UTC hour of day of an epoch-milliseconds timestamp.

    Example:
        >>> hour_of(881250949000)
        15
    """
    return ts_ms // 3_600_000 % 24


def parse(tables: Mapping[str, str]) -> list[Rating]:
    """The ratings of the ``inter``, ``user`` and ``item`` tables (text), joined and sorted by
    timestamp (ties in file order).

    Raises:
        DatasetError: A table is malformed or a rating names an unknown user or item.
    """
    users = {row["user_id"]: user_context(row) for row in read_table(tables["user"])}
    items = {row["item_id"]: item_features(row) for row in read_table(tables["item"])}
    ratings = []
    for row in read_table(tables["inter"]):
        user, item = row["user_id"], row["item_id"]
        if user not in users or item not in items:
            raise DatasetError(f"rating of user {user!r}, item {item!r}: not in the tables")
        ts_ms = int(float(row["timestamp"])) * 1000
        ratings.append(Rating(ts_ms, user, item, float(row["rating"]),
                              {**users[user], "hour": hour_of(ts_ms)}, items[item]))
    ratings.sort(key=lambda r: r.ts_ms)  # stable: ties keep the file's order
    return ratings


def load(cache_root: Path) -> list[Rating]:
    """MovieLens-100K's 100,000 ratings in time order, fetched into ``cache_root`` if needed."""
    directory = fetch(cache_root)
    return parse({name: (directory / f"ml-100k.{name}").read_text() for name in SHA256})


def fetch(cache_root: Path) -> Path:
    """The directory holding the three files: ``<cache_root>/ml-100k``, filled from the
    ``recbole`` wheel (``pip download``, PyPI) when a file is missing or not the expected one.

    Raises:
        DatasetError: pip failed, or the wheel does not hold the expected files.
    """
    directory = cache_root / "ml-100k"
    if all(_digest(directory / f"ml-100k.{n}") == sha for n, sha in SHA256.items()):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ml-100k-", dir=cache_root) as tmp:
        done = subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--quiet", WHEEL, "-d", tmp],
            capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DatasetError(f"pip download {WHEEL} failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, sha in SHA256.items():
                try:
                    data = wheel.read(f"{MEMBER_DIR}/ml-100k.{name}")
                except KeyError:
                    raise DatasetError(f"{wheels[0].name} has no {MEMBER_DIR}/ml-100k.{name}"
                                       ) from None
                if hashlib.sha256(data).hexdigest() != sha:
                    raise DatasetError(f"ml-100k.{name} in {wheels[0].name}: unexpected SHA-256")
                part = Path(tmp) / f"ml-100k.{name}"
                part.write_bytes(data)
                part.replace(directory / f"ml-100k.{name}")  # whole files only, never halves
    return directory


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
