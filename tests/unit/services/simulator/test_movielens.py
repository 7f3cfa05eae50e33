"""MovieLens-100K as requests: the RecBole files parsed, joined and ordered, on tiny tables
written here (typed headers, the file's 'unkonwn' year); and the cache that spares pip."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator import movielens
from services.simulator.movielens import DatasetError, Rating, parse, read_table

# Columns deliberately in another order than RecBole's: they are read by their header names.
INTER = ("item_id:token\tuser_id:token\ttimestamp:float\trating:float\n"
         "10\t1\t881250949\t4\n"  # 1997-12-04 15:15:49 UTC
         "20\t2\t881250900\t3\n"  # earlier
         "30\t1\t881250949\t5\n"  # same second as the first: keeps file order
         "20\t1\t874965478\t1\n")  # earliest
USER = ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n"
        "2\t53\tF\tother\t94043\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tToy Story\t1995\tAnimation Children's Comedy\n"
        "20\tunkonwn\tunkonwn\tunknown\n"
        "30\tBlade Runner\t1982\tFilm-Noir Sci-Fi\n")


def tables(**changes: str) -> dict[str, str]:
    return {"inter": INTER, "user": USER, "item": ITEM, **changes}


def test_ratings_come_in_time_order_with_ties_in_file_order() -> None:
    ratings = parse(tables())
    assert [(r.user_id, r.item_id) for r in ratings] == [
        ("1", "20"), ("2", "20"), ("1", "10"), ("1", "30")]
    assert [r.ts_ms for r in ratings] == [874965478000, 881250900000, 881250949000,
                                          881250949000]


def test_the_label_is_a_rating_of_four_or_more() -> None:
    assert [(r.rating, r.label) for r in parse(tables())] == [
        (1.0, 0), (3.0, 0), (4.0, 1), (5.0, 1)]


def test_user_attributes_and_the_hour_are_the_context_movie_attributes_the_candidate() -> None:
    rating = parse(tables())[2]  # user 1 rates item 10 at 15:15 UTC
    assert rating.context == {"age": 24, "gender": "M", "occupation": "technician",
                              "hour": 15}
    assert rating.item == {"release_year": 1995, "genre_animation": True,
                           "genre_childrens": True, "genre_comedy": True}
    assert rating.body() == {
        "user_id": "1", "context": dict(rating.context),
        "candidates": [{"item_id": "10", "features": dict(rating.item)}]}


def test_an_unknown_release_year_is_absent_not_a_made_up_number() -> None:
    unknown = parse(tables())[0]
    assert unknown.item == {"genre_unknown": True}
    assert "release_year" not in unknown.features()


def test_features_are_what_serving_logs_for_the_request() -> None:
    for rating in parse(tables()):
        logged = model_features(PredictRequest.model_validate(rating.body()))
        assert rating.features() == logged[0]
        assert (rating.features()["user_id"], rating.features()["item_id"]) == (
            rating.user_id, rating.item_id)
        assert all(isinstance(v, str | int | bool) for v in rating.features().values())


def test_a_rating_of_an_unknown_user_or_a_ragged_line_is_refused() -> None:
    with pytest.raises(DatasetError, match="user '9'"):
        parse(tables(inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                           "9\t10\t4\t881250949\n"))
    with pytest.raises(DatasetError, match="line 2: 1 cells, header has 2"):
        read_table("user_id:token\tage:token\n1\n")
    with pytest.raises(DatasetError, match="empty"):
        read_table("")


# -- fetch: pip once, the cache afterwards --------------------------------------------------


def fake_wheel(path: Path, files: Mapping[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(f"{movielens.MEMBER_DIR}/ml-100k.{name}", text)


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """pip download replaced by writing a wheel of the tiny tables into its ``-d`` dir; the
    expected digests are the tiny tables'. Returns the commands run."""
    monkeypatch.setattr(movielens, "SHA256", {
        name: hashlib.sha256(text.encode()).hexdigest() for name, text in tables().items()})
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        fake_wheel(Path(cmd[cmd.index("-d") + 1]) / "recbole-1.2.1-py3-none-any.whl", tables())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(movielens.subprocess, "run", run)
    return calls


def test_fetch_downloads_the_wheel_once_and_then_reads_the_cache(
        tmp_path: Path, fake_pip: list[list[str]]) -> None:
    first = movielens.load(tmp_path)
    assert len(fake_pip) == 1
    assert fake_pip[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert movielens.WHEEL in fake_pip[0]
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == [
        "ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    assert movielens.load(tmp_path) == first
    assert len(fake_pip) == 1  # the second run did not download


def test_a_damaged_cached_file_is_fetched_again(tmp_path: Path,
                                                fake_pip: list[list[str]]) -> None:
    movielens.fetch(tmp_path)
    (tmp_path / "ml-100k" / "ml-100k.item").write_text("garbage")
    assert len(parse_dir(movielens.fetch(tmp_path))) == 4
    assert len(fake_pip) == 2


def test_a_wheel_with_other_files_is_refused(tmp_path: Path, fake_pip: list[list[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(movielens.SHA256, "inter", "0" * 64)
    with pytest.raises(DatasetError, match="ml-100k.inter in recbole-1.2.1.*unexpected SHA"):
        movielens.fetch(tmp_path)


def test_a_failing_pip_is_an_error_that_says_so(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def failed(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "No matching distribution")

    monkeypatch.setattr(movielens.subprocess, "run", failed)
    with pytest.raises(DatasetError, match="pip download recbole==1.2.1 failed: No matching"):
        movielens.fetch(tmp_path)


def parse_dir(directory: Path) -> list[Rating]:
    return parse({n: (directory / f"ml-100k.{n}").read_text() for n in ("inter", "user", "item")})
