"""Tests of memxr.readers.things_meta: the real THINGS tables (skipped when absent) and small
synthetic files with the quirks and errors of the format."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memxr.errors import InputError
from memxr.readers.things_meta import (
    label_stimuli,
    read_categories_final,
    read_concept_categories,
    read_memorability,
    read_things_concepts,
    stimulus_table,
)

MEMO = "THINGS_Memorability_Scores.csv"
LINKS = "Concept_to_category_linking.csv"
CONCEPTS = "things_concepts.tsv"
CATS = "Categories_final_20200131.tsv"
TOPDOWN = "Top-down Category (manual selection)"


def write(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    """Write ``text`` byte-exactly (UTF-8, optional BOM and CRLF line ends)."""
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def raises_input_error(
    fn, *args, file: str, field: str, match: str | None = None, **kwargs
) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.file == file
    assert err.field == field
    assert "\n" not in str(err)
    return err


# ---------------------------------------------------------------------------------------------
# real tables
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memo(things_dir: Path) -> pd.DataFrame:
    return read_memorability(things_dir / MEMO)


@pytest.fixture(scope="module")
def links(things_dir: Path) -> pd.DataFrame:
    return read_concept_categories(things_dir / LINKS)


@pytest.fixture(scope="module")
def tconcepts(things_dir: Path) -> pd.DataFrame:
    return read_things_concepts(things_dir / CONCEPTS)


@pytest.fixture(scope="module")
def cats(things_dir: Path) -> pd.DataFrame:
    return read_categories_final(things_dir / CATS, things_dir / CONCEPTS)


def test_memorability_real(memo: pd.DataFrame) -> None:
    assert memo.shape == (26107, 3)
    assert list(memo.columns) == ["concept", "memorability", "image_nr"]
    assert memo.index.name == "stimulus_id" and memo.index.is_unique
    assert memo["memorability"].dtype == np.float64
    assert memo["image_nr"].dtype == np.int64
    assert memo["image_nr"].tolist() == list(range(1, 26108))
    assert memo.loc["aardvark_01b.jpg", "memorability"] == pytest.approx(0.825)
    assert memo.loc["zucchini_13s.jpg", "memorability"] == pytest.approx(0.731707317)
    # the one unscored image stays, with NaN (never 0)
    assert memo["memorability"].isna().sum() == 1
    assert np.isnan(memo.loc["goalpost_08s.jpg", "memorability"])
    assert memo.loc["goalpost_08s.jpg", "concept"] == "goalpost"
    assert memo["memorability"].mean() == pytest.approx(0.7897, abs=5e-4)
    assert memo["memorability"].min() == pytest.approx(0.384615385)
    assert memo["memorability"].max() == 1.0
    assert memo["concept"].nunique() == 1854
    assert all(isinstance(v, str) for v in memo.index[:100])


def test_concept_is_the_folder_not_a_name_prefix(memo: pd.DataFrame) -> None:
    baton = memo[memo.index.str.startswith("baton")]
    assert sorted(baton["concept"].unique()) == ["baton1", "baton2", "baton3", "baton4"]
    b4 = baton[baton["concept"] == "baton4"]
    assert len(b4) > 0 and all(s.startswith("baton4_") for s in b4.index)
    chimes = memo[memo.index.str.startswith("wind_chime")]
    assert len(chimes) > 0
    assert set(chimes["concept"]) == {"wind_chimes"}
    assert memo.loc["air_conditioner_01b.jpg", "concept"] == "air_conditioner"


def test_concept_categories_real(links: pd.DataFrame, memo: pd.DataFrame) -> None:
    assert links.shape == (1854, 3)
    assert list(links.columns) == ["category_id", "category", "concept_memorability"]
    assert links.index.name == "concept" and links.index.is_unique
    assert links["category_id"].dtype == np.int64
    none = links[links["category_id"] == 0]
    assert len(none) == 530
    assert set(none["category"]) == {"NA"}  # a label, kept as text
    assert (links["category"] == "NA").sum() == 530
    assert links["category"].map(type).eq(str).all()
    assert links["category_id"].between(0, 27).all()
    assert links.loc["aardvark", "category"] == "animal"
    assert links.loc["aardvark", "category_id"] == 1
    assert links.loc["bat2", "category"] == "sports equipment"
    assert set(links.index) == set(memo["concept"])
    # CR is the mean image score of the concept; goalpost has none
    assert np.isnan(links.loc["goalpost", "concept_memorability"])
    means = memo.groupby("concept")["memorability"].mean()
    diff = (means - links["concept_memorability"]).abs()
    assert diff.max() < 1e-6
    # one label per id, and the ids index the 27 categories in their order
    assert links.groupby("category_id")["category"].nunique().max() == 1


def test_concept_categories_read_as_is(links: pd.DataFrame) -> None:
    # the public file carries a row shift in its category cells (see the reader's Notes);
    # the reader does not alter the file's content
    assert links.loc["hot_chocolate", "category"] == "vehicle"
    assert links.loc["hot-air_balloon", "category"] == "drink"


def test_things_concepts_real(tconcepts: pd.DataFrame, memo: pd.DataFrame) -> None:
    assert tconcepts.shape == (1854, 2)
    assert list(tconcepts.columns) == ["word", "topdown_categories"]
    assert tconcepts.index.name == "concept" and tconcepts.index.is_unique
    order = list(tconcepts.index)
    assert order.index("camera_lens") < order.index("camera1") < order.index("camera2")
    assert tconcepts.loc["air_conditioner", "word"] == "air conditioner"
    assert tconcepts.loc[["bat1", "bat2"], "word"].tolist() == ["bat", "bat"]
    assert tconcepts.loc["bat1", "topdown_categories"] == "animal"
    assert tconcepts.loc["bat2", "topdown_categories"] == "weapon, sports equipment"
    assert tconcepts.loc["zipper", "topdown_categories"] == ""
    assert set(tconcepts.index) == set(memo["concept"])


def test_categories_final_without_concept_table(things_dir: Path) -> None:
    cf = read_categories_final(things_dir / CATS)
    assert cf.shape == (1854, 27)  # the totals row is gone
    assert cf.index.name == "word"
    assert (cf.index == "bat").sum() == 2
    assert "" not in cf.index
    assert cf.columns[0] == "animal" and cf.columns[-1] == "weapon"
    assert "candy" not in cf.columns  # the 28th column onwards are not the 27 categories
    assert all(dt == np.bool_ for dt in cf.dtypes)


def test_categories_final_totals_row(things_dir: Path, cats: pd.DataFrame) -> None:
    raw = pd.read_csv(things_dir / CATS, sep="\t", dtype=str, keep_default_na=False)
    totals = raw.iloc[-1]
    assert totals["Word"] == ""
    for name in cats.columns:
        assert cats[name].sum() == int(totals[name]), name
    assert cats["animal"].sum() == 177


def test_categories_final_homonym_join(
    things_dir: Path, cats: pd.DataFrame, tconcepts: pd.DataFrame, links: pd.DataFrame
) -> None:
    assert cats.index.name == "concept" and cats.index.is_unique
    assert list(cats.index) == list(tconcepts.index)  # the real files share their row order
    assert bool(cats.loc["bat1", "animal"]) and not cats.loc["bat1", "sports equipment"]
    assert bool(cats.loc["bat2", "sports equipment"]) and not cats.loc["bat2", "animal"]
    assert bool(cats.loc["bat2", "weapon"])
    assert bool(cats.loc["air_conditioner", "electronic device"])
    assert cats.loc["air_conditioner"].sum() == 1
    assert bool(cats.loc["flip_flop", "clothing"])
    assert bool(cats.loc["bow2", "weapon"]) and not cats.loc["bow3"].any()
    # the join agrees with the concept table's own category list for every concept but one
    names = np.array(cats.columns)
    same = [
        {c.strip() for c in tconcepts.loc[k, "topdown_categories"].split(",") if c.strip()}
        == set(names[cats.loc[k].to_numpy()])
        for k in cats.index
    ]
    assert sum(same) >= 1853
    # the category ids of the linking table index these 27 columns
    named = links[links["category_id"] > 0]
    assert (names[named["category_id"] - 1] == named["category"].to_numpy()).all()


def test_categories_final_join_does_not_depend_on_row_order(
    things_dir: Path, cats: pd.DataFrame, tconcepts: pd.DataFrame
) -> None:
    shuffled = tconcepts.sample(frac=1.0, random_state=1)
    cf = read_categories_final(things_dir / CATS, shuffled)
    assert list(cf.index) == list(cats.index)
    assert cf.equals(cats)


def test_stimulus_table_real(things_dir: Path, memo: pd.DataFrame) -> None:
    st = stimulus_table(
        memorability=things_dir / MEMO,
        concepts=things_dir / LINKS,
        things_concepts=things_dir / CONCEPTS,
        categories=things_dir / CATS,
    )
    assert st.shape == (26107, 5 + 27)
    assert list(st.columns[:5]) == [
        "concept",
        "category",
        "category_id",
        "memorability",
        "topdown_categories",
    ]
    assert list(st.index) == list(memo.index)
    assert st.attrs["unknown_concepts"] == 0
    assert st.attrs["source"] == MEMO
    assert np.isnan(st.loc["goalpost_08s.jpg", "memorability"])
    assert st.loc["goalpost_08s.jpg", "category"] == "sports equipment"
    assert st["memorability"].isna().sum() == 1
    assert st.loc["aardvark_01b.jpg", "category_id"] == 1
    assert bool(st.loc["aardvark_01b.jpg", "cat_animal"])
    assert st.filter(like="cat_").dtypes.eq(bool).all()
    assert "cat_body_part" in st.columns
    bat2 = st[st["concept"] == "bat2"]
    assert len(bat2) > 0 and set(bat2["topdown_categories"]) == {"weapon, sports equipment"}
    assert bat2["cat_sports_equipment"].all() and not bat2["cat_animal"].any()
    assert (st["category"] == "NA").sum() == (st["category_id"] == 0).sum() > 0


def test_stimulus_table_minimal(things_dir: Path) -> None:
    st = stimulus_table(things_dir / MEMO)
    assert list(st.columns) == ["concept", "category", "category_id", "memorability"]
    assert (st["category"] == "").all() and (st["category_id"] == -1).all()


def test_label_stimuli_real(things_dir: Path, memo: pd.DataFrame) -> None:
    ids = list(memo.index[::-1]) + ["not_a_thing_01b.jpg", "new_concept_02s.jpg"]
    fallback = [""] * len(memo) + ["", "aardvark"]
    start = time.perf_counter()
    df = label_stimuli(
        ids,
        memorability=things_dir / MEMO,
        concepts=things_dir / LINKS,
        fallback_concepts=fallback,
    )
    assert time.perf_counter() - start < 5.0
    assert list(df.index) == ids
    assert list(df.columns) == ["concept", "category", "memorability"]
    assert df.attrs["matched"] == 26106
    assert df.attrs["missing_score"] == 1
    assert df.attrs["unknown"] == 2
    assert df.attrs["concept_mismatch"] == 0
    assert df.loc["zucchini_13s.jpg", "memorability"] == pytest.approx(0.731707317)
    assert df.loc["zucchini_13s.jpg", "category"] == "food"
    assert np.isnan(df.loc["goalpost_08s.jpg", "memorability"])
    assert df.loc["not_a_thing_01b.jpg"].tolist()[:2] == ["", ""]
    assert df.loc["new_concept_02s.jpg", "concept"] == "aardvark"  # from the fallback
    assert df.loc["new_concept_02s.jpg", "category"] == "animal"
    assert np.isnan(df.loc["new_concept_02s.jpg", "memorability"])
    assert df.loc["baton4_01b.jpg", "concept"] == "baton4"
    assert np.array_equal(
        df["memorability"].to_numpy()[: len(memo)],
        memo["memorability"].to_numpy()[::-1],
        equal_nan=True,
    )


def test_label_stimuli_fallback_disagreement(things_dir: Path) -> None:
    ids = ["aardvark_01b.jpg", "abacus_01s.jpg"]
    df = label_stimuli(ids, memorability=things_dir / MEMO, fallback_concepts=["x", "abacus"])
    assert df["concept"].tolist() == ["aardvark", "abacus"]  # the table wins
    assert df.attrs["concept_mismatch"] == 1


# ---------------------------------------------------------------------------------------------
# synthetic files: quirks
# ---------------------------------------------------------------------------------------------

MEMO_TEXT = (
    "image_nr,image_name,file_path,cr\n"
    "1,baton4_01s.jpg,images/baton4/baton4_01s.jpg,0.8\n"
    "2,wind_chimes_02s.jpg,images/wind_chimes/wind_chimes_02s.jpg,0.6\n"
    "3,goalpost_08s.jpg,images/goalpost/goalpost_08s.jpg,\n"
)


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_memorability_line_ends_and_bom(tmp_path: Path, bom: bool, crlf: bool) -> None:
    m = read_memorability(write(tmp_path / "m.csv", MEMO_TEXT, bom=bom, crlf=crlf))
    assert list(m.columns) == ["concept", "memorability", "image_nr"]
    assert m.index.tolist() == ["baton4_01s.jpg", "wind_chimes_02s.jpg", "goalpost_08s.jpg"]
    assert m["concept"].tolist() == ["baton4", "wind_chimes", "goalpost"]
    assert m["memorability"].tolist()[:2] == [0.8, 0.6]
    assert np.isnan(m["memorability"].iloc[2])


def test_memorability_extra_columns_and_order(tmp_path: Path) -> None:
    text = (
        " cr ,note,file_path,image_name,image_nr,,\n"
        "NaN,x,images/a/a_01b.jpg,a_01b.jpg,7,,\n"
        "0.5,y,images\\b2\\b2_01s.jpg,b2_01s.jpg,8,,\n"
        "NA,z,./images/c/c_01s.jpg,c_01s.jpg,9,,\n"
    )
    m = read_memorability(write(tmp_path / "m.csv", text, bom=True, crlf=True))
    assert m["concept"].tolist() == ["a", "b2", "c"]
    assert m["image_nr"].tolist() == [7, 8, 9]
    assert m["memorability"].isna().tolist() == [True, False, True]


def test_concept_categories_quirks(tmp_path: Path) -> None:
    text = (
        "concept,category,category_label,cr,dim_based_typ,beh_typ,,,\n"
        "bow3,0,NA,0.76,0.7,0,,,\n"
        "goalpost,22,sports equipment,NaN,0.9,0,,,7.8\n"
        "aardvark,1,animal,0.78,0.9,4.8,,,\n"
    )
    c = read_concept_categories(write(tmp_path / "c.csv", text, bom=True, crlf=True))
    assert list(c.columns) == ["category_id", "category", "concept_memorability"]
    assert c.loc["bow3"].tolist()[:2] == [0, "NA"]
    assert np.isnan(c.loc["goalpost", "concept_memorability"])
    assert c["category_id"].tolist() == [0, 22, 1]


def test_categories_final_homonyms_by_id_number(tmp_path: Path) -> None:
    header = "Word\tDefinition\t" + "\t".join(f"c{i}" for i in range(1, 31)) + "\t\n"

    def row(word: str, definition: str, k: int) -> str:
        return (
            f"{word}\t{definition}\t" + "\t".join("1" if i == k else "" for i in range(30)) + "\t\n"
        )

    cats = write(
        tmp_path / "cats.tsv",
        header
        + row("bat", "flying mammal", 0)
        + row("bat", "club", 21)
        + row("air conditioner", "cools", 8)
        + row("bow2", "weapon", 26)
        + row("bow1", "knot", 3)
        + "\t\t2\t"
        + "\t".join(["1"] * 29)
        + "\t\n",
        crlf=True,
    )
    concepts = write(
        tmp_path / "concepts.tsv",
        f"Word\tuniqueID\t{TOPDOWN}\n"
        "bow\tbow1\tclothing\n"
        "air conditioner\tair_conditioner\telectronic device\n"
        "bat\tbat2\tsports equipment\n"
        "bow\tbow2\tweapon\n"
        "bat\tbat1\tanimal\n",
    )
    cf = read_categories_final(cats, concepts)
    assert cf.index.tolist() == ["bat1", "bat2", "air_conditioner", "bow2", "bow1"]
    assert cf.shape == (5, 27)
    assert bool(cf.loc["bat1", "c1"]) and bool(cf.loc["bat2", "c22"])
    assert bool(cf.loc["air_conditioner", "c9"]) and bool(cf.loc["bow1", "c4"])
    assert bool(cf.loc["bow2", "c27"]) and cf.loc["bow2"].sum() == 1


def test_categories_final_homonyms_by_definition(tmp_path: Path) -> None:
    header = "Word\tDefinition\t" + "\t".join(f"c{i}" for i in range(1, 28)) + "\n"
    club = "bat\ta club\t" + "\t".join("1" if i == 21 else "" for i in range(27)) + "\n"
    mammal = "bat\ta mammal\t" + "\t".join("1" if i == 0 else "" for i in range(27)) + "\n"
    cats = write(tmp_path / "cats.tsv", header + club + mammal)  # club listed first
    concepts = write(
        tmp_path / "concepts.tsv",
        f"Word\tuniqueID\t{TOPDOWN}\tDefinition (from WordNet)\n"
        "bat\tbat1\tanimal\ta mammal\nbat\tbat2\tsports equipment\ta  club\n",
    )
    cf = read_categories_final(cats, concepts)
    assert cf.index.tolist() == ["bat2", "bat1"]
    assert bool(cf.loc["bat1", "c1"]) and bool(cf.loc["bat2", "c22"])


def test_label_stimuli_without_tables() -> None:
    df = label_stimuli(
        np.array(["a_01b.jpg", "b_02s.jpg", "c_03s.jpg"]), fallback_concepts=["a", None, np.nan]
    )
    assert df["concept"].tolist() == ["a", "", ""]
    assert df["category"].tolist() == ["", "", ""]
    assert df["memorability"].isna().all() and df["memorability"].dtype == np.float64
    assert df.attrs == {"matched": 0, "missing_score": 0, "unknown": 3, "concept_mismatch": 0}


def test_label_stimuli_concept_from_fallback_gets_category(tmp_path: Path) -> None:
    memo = write(tmp_path / "m.csv", MEMO_TEXT)
    links = write(tmp_path / "c.csv", "concept,category,category_label,CR\nx,0,NA,0.5\n")
    df = label_stimuli(
        ["x_01b.jpg", "baton4_01s.jpg"],
        memorability=memo,
        concepts=links,
        fallback_concepts=["x", ""],
    )
    assert df["concept"].tolist() == ["x", "baton4"]
    assert df["category"].tolist() == ["NA", ""]
    assert df.attrs["unknown"] == 1 and df.attrs["matched"] == 1


def test_cache_follows_file_changes_and_returns_copies(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", MEMO_TEXT)
    first = read_memorability(p)
    first.loc["baton4_01s.jpg", "memorability"] = -5.0
    assert read_memorability(p).loc["baton4_01s.jpg", "memorability"] == 0.8
    write(p, MEMO_TEXT.replace(",0.8\n", ",0.25\n"))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert read_memorability(p).loc["baton4_01s.jpg", "memorability"] == 0.25
    assert label_stimuli(["baton4_01s.jpg"], memorability=p)["memorability"].iloc[0] == 0.25


# ---------------------------------------------------------------------------------------------
# synthetic files: errors
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    raises_input_error(read_memorability, tmp_path / "nope.csv", file="nope.csv", field="file")
    raises_input_error(
        label_stimuli, ["a.jpg"], concepts=tmp_path / "no.csv", file="no.csv", field="file"
    )


def test_memorability_missing_column(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "image_nr,image_name,file_path,score\n1,a.jpg,images/a/a.jpg,1\n")
    raises_input_error(read_memorability, p, file="m.csv", field="cr", match="missing column")


def test_memorability_bad_values(tmp_path: Path) -> None:
    bad_cr = write(tmp_path / "cr.csv", MEMO_TEXT.replace("0.6", "high"))
    raises_input_error(read_memorability, bad_cr, file="cr.csv", field="cr", match="line 3")
    bad_nr = write(tmp_path / "nr.csv", MEMO_TEXT.replace("\n2,", "\n2.5,"))
    raises_input_error(read_memorability, bad_nr, file="nr.csv", field="image_nr")
    dup = write(
        tmp_path / "dup.csv", MEMO_TEXT + "4,baton4_01s.jpg,images/baton4/baton4_01s.jpg,1\n"
    )
    raises_input_error(read_memorability, dup, file="dup.csv", field="image_name", match="dupl")


@pytest.mark.parametrize(
    "file_path",
    ["baton4_01s.jpg", "images/baton4_01s.jpg", "images//baton4_01s.jpg", "images/baton4/"],
)
def test_memorability_path_without_folder(tmp_path: Path, file_path: str) -> None:
    text = f"image_nr,image_name,file_path,cr\n1,baton4_01s.jpg,{file_path},0.5\n"
    p = write(tmp_path / "m.csv", text)
    raises_input_error(read_memorability, p, file="m.csv", field="file_path")


def test_memorability_path_of_another_image(tmp_path: Path) -> None:
    text = "image_nr,image_name,file_path,cr\n1,baton4_01s.jpg,images/baton4/baton4_02s.jpg,0.5\n"
    p = write(tmp_path / "m.csv", text)
    raises_input_error(read_memorability, p, file="m.csv", field="file_path", match="image_name")


def test_concept_categories_errors(tmp_path: Path) -> None:
    no_cr = write(tmp_path / "a.csv", "concept,category,category_label\nx,1,animal\n")
    raises_input_error(read_concept_categories, no_cr, file="a.csv", field="CR")
    bad_id = write(tmp_path / "b.csv", "concept,category,category_label,CR\nx,one,animal,0.5\n")
    raises_input_error(read_concept_categories, bad_id, file="b.csv", field="category")
    dup = write(tmp_path / "c.csv", "concept,category,category_label,CR\nx,1,a,0.5\nx,1,a,0.5\n")
    raises_input_error(read_concept_categories, dup, file="c.csv", field="concept")


def test_things_concepts_missing_column(tmp_path: Path) -> None:
    p = write(tmp_path / "t.tsv", "Word\tuniqueID\nbat\tbat1\n")
    raises_input_error(read_things_concepts, p, file="t.tsv", field=TOPDOWN)


def test_categories_final_errors(tmp_path: Path) -> None:
    header = "Word\tDefinition\t" + "\t".join(f"c{i}" for i in range(1, 28)) + "\n"
    bad = write(tmp_path / "bad.tsv", header + "bat\td\t2" + "\t" * 26 + "\n")
    raises_input_error(read_categories_final, bad, file="bad.tsv", field="c1", match="0 or 1")
    short = write(tmp_path / "short.tsv", "Word\tDefinition\tc1\tc2\nbat\td\t1\t\n")
    raises_input_error(read_categories_final, short, file="short.tsv", field="header")
    ok = write(tmp_path / "ok.tsv", header + "yak\td\t1" + "\t" * 26 + "\n")
    concepts = write(tmp_path / "t.tsv", f"Word\tuniqueID\t{TOPDOWN}\nbat\tbat1\t\n")
    raises_input_error(read_categories_final, ok, concepts, file="ok.tsv", field="Word")


def test_label_stimuli_errors(tmp_path: Path) -> None:
    raises_input_error(
        label_stimuli, ["a.jpg", "b.jpg", "a.jpg"], file="stimulus_ids", field="stimulus_id"
    )
    raises_input_error(
        label_stimuli,
        ["a.jpg", "b.jpg"],
        fallback_concepts=["a"],
        file="fallback_concepts",
        field="concept",
    )


def test_stimulus_table_needs_its_tables(tmp_path: Path) -> None:
    memo = write(tmp_path / "m.csv", MEMO_TEXT)
    with pytest.raises(TypeError):
        stimulus_table()
    with pytest.raises(TypeError):
        stimulus_table(memo, categories=tmp_path / "cats.tsv")
