"""Human <-> monkey bridge on synthetic THINGS-fMRI and TVSD data with planted effects."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from scipy.spatial.distance import pdist, squareform
from threadpoolctl import threadpool_limits

from memxr import align, stats
from memxr.bridge import (
    DECODING_COLUMNS,
    EFFECT_COLUMNS,
    RSA_COLUMNS,
    bridge,
    cross_decode,
    rdm,
    rsa,
    shared_effects,
)
from memxr.readers.things_fmri import read_things_fmri
from memxr.readers.tvsd import read_normmua
from memxr.readers.tvsd_trials import read_trials
from memxr.reduce import normalize_days, roi_reduce, window_reduce
from memxr.schema import example_cube, text_coord
from memxr.synth import LARGE_EFFECTS, synthesize
from memxr.testing import raise_if_dask_computes

# 4 images per concept: 20 shared concepts (80 train + 4 test images), and 40 more
# concepts (160 images) that only the monkey saw, for the cross-species decoder.
SIZES = {"images_per_concept": 4, "n_fmri_concepts": 20, "n_tvsd_concepts": 60}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: BLAS threads only add start-up and contention on a shared machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bridge")
    truth = synthesize(
        out, scale=0.01, subjects=("sub-01",), monkeys=("N",), **SIZES, **LARGE_EFFECTS
    )
    things = Path(out, "things")
    kw = {
        "memorability": things / "THINGS_Memorability_Scores.csv",
        "concepts": things / "Concept_to_category_linking.csv",
        "checksum": False,
    }
    return {
        "human": read_things_fmri(out / "things-fmri" / "betas_csv", "sub-01", **kw),
        "monkey": read_normmua(out / "tvsd" / "monkeyN", "N", **kw),
        # normalised per recording day, as the pipeline hands time-resolved cubes on
        "trials": normalize_days(read_trials(out / "tvsd" / "monkeyN", "N", **kw)),
        "truth": truth,
    }


@pytest.fixture(scope="module")
def loaded(cubes) -> dict:
    return {k: cubes[k].load() for k in ("human", "monkey")}



def _shared_labelled(human, monkey, split="train") -> list[str]:
    def part(cube):
        return cube.isel(stimulus=np.flatnonzero(cube.split.values == split)) if split else cube

    return align.shared_stimuli(align.labelled(part(human)), align.labelled(part(monkey)))


# ----------------------------------------------------------------------------- effects


def test_effects_planted_and_shared(cubes):
    h, m, truth = cubes["human"], cubes["monkey"], cubes["truth"]
    assert "V1" not in truth["model"]["effects"]["fmri"]  # V1: no direct effect
    assert "V1" not in truth["model"]["effects"]["tvsd"]
    eff = shared_effects(h, m, ["FFA", "V1", "IT"], ["V1", "V4", "IT"], n_permutations=499)
    assert list(eff.columns[: len(EFFECT_COLUMNS)]) == list(EFFECT_COLUMNS)
    ids = _shared_labelled(h, m)
    assert len(ids) >= 60
    assert eff.attrs["stimulus_ids"] == ids and eff.attrs["split"] == "train"
    assert set(eff.n) == {len(ids)} and eff.stimulus_set.nunique() == 1
    assert set(eff.pair) == {"sub-01~monkeyN"} and set(eff.groups) == {"concept"}
    assert set(eff.trials) == {"single (train)"} and eff.p_family.nunique() == 1
    row = eff.set_index(["species", "roi"])
    assert row.loc[("human", "FFA"), "r"] > 0.5 and row.loc[("human", "FFA"), "p_fdr"] < 0.01
    assert row.loc[("macaque", "IT"), "r"] > 0.3 and row.loc[("macaque", "IT"), "p_fdr"] < 0.01
    assert row.loc[("human", "FFA"), "ci_low"] > 0
    assert row.loc[("human", "V1"), "p_fdr"] > 0.05
    assert row.loc[("macaque", "V1"), "p_fdr"] > 0.05
    # one FDR family over every row of the pair
    np.testing.assert_allclose(eff.p_fdr, scipy.stats.false_discovery_control(eff.p))


def test_effects_equal_direct_correlate(cubes):
    h, m = cubes["human"], cubes["monkey"]
    kw = {"n_permutations": 199, "n_bootstrap": 99, "seed": 3}
    eff = shared_effects(h, m, ["FFA", "V1"], ["IT"], method="pearson", **kw).set_index("roi")
    train = _shared_labelled(h, m)
    h_al, m_al = align.align_pair(align.labelled(h), align.labelled(m))
    keep = np.flatnonzero(np.isin(h_al.stimulus_id.values, train))
    h_al, m_al = h_al.isel(stimulus=keep), m_al.isel(stimulus=keep)
    for cube, rois, species in ((h_al, ["FFA", "V1"], "human"), (m_al, ["IT"], "macaque")):
        direct = stats.correlate(
            roi_reduce(cube, rois),
            h_al.memorability,
            "pearson",
            groups="concept",
            compute=True,
            **kw,
        )
        for roi in rois:
            got = eff[eff.species == species].loc[roi]
            for k in ("r", "p", "ci_low", "ci_high"):
                assert got[k] == pytest.approx(float(direct[k].sel(roi=roi)), rel=1e-9), k


def test_effects_time_resolved_monkey_and_laziness(cubes, loaded):
    h, mt = cubes["human"], cubes["trials"]
    eff = shared_effects(h, mt, ["FFA"], ["V1", "IT"], n_permutations=199, n_bootstrap=0)
    row = eff.set_index(["species", "roi"])
    assert row.loc[("macaque", "IT"), "r"] > 0.3 and row.loc[("macaque", "IT"), "p_fdr"] < 0.05
    h_al, m_al = align.align_pair(align.labelled(h), align.labelled(mt))
    keep = np.flatnonzero(np.isin(h_al.stimulus_id.values, _shared_labelled(h, mt)))
    h_al, m_al = h_al.isel(stimulus=keep), m_al.isel(stimulus=keep)
    it = window_reduce(roi_reduce(m_al, ["IT"])).sel(roi="IT")
    expected = scipy.stats.spearmanr(it.values, h_al.memorability.values).statistic
    assert row.loc[("macaque", "IT"), "r"] == pytest.approx(expected)
    # lazy and in-memory cubes give the same numbers
    lazy = shared_effects(h, cubes["monkey"], ["FFA"], ["IT"], n_permutations=99, n_bootstrap=0)
    eager = shared_effects(
        loaded["human"], loaded["monkey"], ["FFA"], ["IT"], n_permutations=99, n_bootstrap=0
    )
    np.testing.assert_allclose(lazy[["r", "p"]], eager[["r", "p"]])


# ----------------------------------------------------------------------------- RDM


@pytest.mark.parametrize("backend", ["numpy", "dask"])
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "cosine", "sqeuclidean"])
def test_rdm_equals_pdist(backend, metric):
    x = np.random.default_rng(0).normal(size=(9, 6)) + 3
    feats = xr.DataArray(
        x,
        dims=("stimulus", "feature"),
        coords={"stimulus_id": ("stimulus", text_coord(f"s{i}" for i in range(9)))},
    )
    if backend == "dask":
        feats = feats.chunk({"stimulus": 4, "feature": 3})
        with raise_if_dask_computes():
            d = rdm(feats, metric)
        assert d.chunks is not None
    else:
        d = rdm(feats, metric)
    assert d.dims == ("stimulus", "stimulus_2")
    assert d.stimulus_id_2.values.tolist() == [f"s{i}" for i in range(9)]
    np.testing.assert_allclose(d.values, squareform(pdist(x, metric)), atol=1e-12)


def test_rdm_rejects_bad_input():
    with pytest.raises(ValueError, match="metric"):
        rdm(xr.DataArray(np.ones((3, 2)), dims=("stimulus", "feature")), "manhattan")
    with pytest.raises(ValueError, match="dims"):
        rdm(xr.DataArray(np.ones(3), dims="stimulus"))


# ----------------------------------------------------------------------------- RSA


def test_rsa_exact_on_small_cubes():
    h = example_cube(n_stimulus=15, n_channel=6, seed=0)
    m = example_cube(n_stimulus=15, n_channel=4, seed=1).assign_attrs(subject="monkeyN")
    m["response"] = m["response"] + 0.5 * h["response"].values[:, :4]
    res = rsa(h, m, "A", "A", n_permutations=199)
    assert list(res.columns[: len(RSA_COLUMNS)]) == list(RSA_COLUMNS)
    expected = scipy.stats.spearmanr(
        pdist(h.response.values, "correlation"), pdist(m.response.values, "correlation")
    ).statistic
    assert res.rsa_r[0] == pytest.approx(expected)
    same = rsa(h, h.assign_attrs(subject="copy"), "A", "A", n_permutations=99)
    assert same.rsa_r[0] == pytest.approx(1.0) and same.p[0] == pytest.approx(0.01)
    # z-scored channels; a constant channel is left out
    m["response"][:, 0] = 2.0
    z = rsa(h, m, "A", "A", n_permutations=0, zscore=True, metric="euclidean")
    zs = lambda a: (a - a.mean(0)) / a.std(0)  # noqa: E731
    expected = scipy.stats.spearmanr(
        pdist(zs(h.response.values)), pdist(zs(m.response.values[:, 1:]))
    ).statistic
    assert z.rsa_r[0] == pytest.approx(expected)
    assert z.n_dropped_monkey[0] == 1 and z.monkey_n_channels[0] == 3


def test_rsa_planted(cubes):
    h, m = cubes["human"], cubes["monkey"]
    res = rsa(h, m, ["LOC", "EBA", "IT", "V1"], ["V1", "V4", "IT"], n_permutations=199)
    train = [s for s in _shared_labelled(h, m) if "test" not in s]
    shared_train = align.shared_stimuli(h.memxr.split("train"), m.memxr.split("train"))
    assert len(res) == 12 and set(res.n_items) == {len(shared_train)} and len(train) > 0
    assert res.attrs["items"] == shared_train and set(res.split) == {"train"}
    pairs = res.set_index(["human_roi", "monkey_area"])
    # The planted memorability gain varies across the voxels of these ROIs (they overlap
    # ROIs of other gains); a gain uniform over an ROI's voxels (FFA alone) shifts every
    # voxel alike, which the correlation distance ignores by design.
    for roi in ("LOC", "EBA", "IT"):
        assert pairs.loc[(roi, "IT"), "rsa_r"] > 0.1, roi
        assert pairs.loc[(roi, "IT"), "p"] < 0.05, roi
    # human V1 and monkey IT share no image features (low-level vs high-level ones); human
    # and monkey V1 do (the low-level features), so their RDMs agree
    assert pairs.loc[("V1", "IT"), "p_fdr"] > 0.05
    assert pairs.loc[("V1", "V1"), "p_fdr"] < 0.05
    np.testing.assert_allclose(res.p_fdr, scipy.stats.false_discovery_control(res.p))
    # all shared images: the 4 test images join
    every = rsa(h, m, "FFA", "IT", n_permutations=0, split=None)
    assert every.n_items[0] == len(align.shared_stimuli(h, m)) and np.isnan(every.p[0])


def test_rsa_null_is_uniformish(loaded):
    h, m = loaded["human"], loaded["monkey"]
    ps = []
    for k in range(8):
        ids = np.asarray(m.stimulus_id.values)[
            np.random.default_rng(k).permutation(m.stimulus.size)
        ]
        shuffled = m.assign_coords(stimulus_id=("stimulus", text_coord(ids)))
        res = rsa(h, shuffled, ["FFA", "LOC", "IT"], ["V4", "IT"], n_permutations=99, seed=k)
        ps += res.p.tolist()
    ps = np.array(ps)
    assert ((ps > 0) & (ps <= 1)).all()
    assert (ps < 0.05).mean() <= 0.2
    assert 0.3 < ps.mean() < 0.7


def test_rsa_concept_level_and_subsample(cubes):
    h, m = cubes["human"], cubes["monkey"]
    res = rsa(h, m, ["LOC", "V1"], ["IT"], level="concept", n_permutations=99)
    concepts = sorted({c for c in h.concept.values[h.split.values == "train"]})
    assert set(res.level) == {"concept"} and set(res.n_items) == {len(concepts)}
    assert sorted(res.attrs["items"]) == concepts
    assert res.rsa_r.notna().all() and res.p.between(0, 1).all()
    empty = rsa(h, m, "LOC", "IT", level="concept", min_concept_images=5)
    assert empty.empty and "an RDM needs at least 3" in empty.attrs["reason"]
    sub = rsa(h, m, "LOC", "IT", n_permutations=49, max_items=30, seed=1)
    again = rsa(h, m, "LOC", "IT", n_permutations=49, max_items=30, seed=1)
    assert sub.n_items[0] == 30 and sub.subsampled[0] and sub.n_shared[0] > 30
    assert sub.attrs["items"] == again.attrs["items"] and sub.rsa_r[0] == again.rsa_r[0]


def test_rsa_time_resolved_monkey(cubes):
    res = rsa(cubes["human"], cubes["trials"], ["LOC", "V1"], ["IT"], n_permutations=99)
    pairs = res.set_index("human_roi")
    assert pairs.loc["LOC", "rsa_r"] > 0.1 and pairs.loc["LOC", "p"] < 0.05


def test_bridge_cache_reuses_per_cube_work(cubes):
    """One human with two monkeys (and the same images): with a cache kept across the
    calls, the human's RDMs and per-fold PCA scores are computed once; the results are
    those without a cache; another cube object (even equal) is never served from it."""
    h, m = cubes["human"], cubes["monkey"]
    m2 = m.copy()  # a second monkey with the same images (a distinct object)
    kw = {"n_permutations": 19, "n_bootstrap": 0, "n_decoding_permutations": 9,
          "decoding_components": 5}  # fmt: skip
    cache: dict = {}
    first = bridge(h, m, ["FFA", "V1"], ["IT"], cache=cache, **kw)
    n_first = len(cache)
    assert n_first == 2 * 2 + 2 * 1 + 2  # RDMs of 2 ROIs + 1 area at 2 levels; 2 target ROIs
    second = bridge(h, m2, ["FFA", "V1"], ["IT"], cache=cache, **kw)
    # only the new monkey's RDMs were added: the human's were reused
    assert len(cache) == n_first + 2
    plain = bridge(h, m2, ["FFA", "V1"], ["IT"], **kw)
    for k in ("rsa", "decoding"):
        pd.testing.assert_frame_equal(second[k], plain[k])
        assert len(first[k]) == len(second[k]) > 0
    # every RDM of the same cubes and items comes from the cache: nothing is read
    with raise_if_dask_computes():
        again = rsa(h, m2, ["FFA", "V1"], ["IT"], n_permutations=19, cache=cache)
    pd.testing.assert_frame_equal(again, plain["rsa"].query("level == 'image'"))


# ----------------------------------------------------------------------------- decoding


def test_cross_decode_planted(cubes):
    h, m = cubes["human"], cubes["monkey"]
    out = cross_decode(m, h, ["IT", "V1"], ["FFA"], n_permutations=99)
    assert list(out.columns[: len(DECODING_COLUMNS)]) == list(DECODING_COLUMNS)
    assert set(out.direction) == {"monkeyN->sub-01"} and set(out.pair) == {"sub-01~monkeyN"}
    assert set(out.n) == {len(_shared_labelled(h, m))}
    assert set(out.n_train) == {160} and set(out.trials) == {"single (train)"}
    assert set(out.disjoint_concepts) == {True}
    rows = out.set_index("train_features")
    assert rows.loc["IT", "pearson_r"] > 0.5 and rows.loc["IT", "spearman_rho"] > 0.5
    # the synthetic IT patterns are low-dimensional (a global response, a region response and
    # the concept responses shared by the images of a concept carry most of their variance),
    # so decoders refit on shuffled memorability often project on the same axes and transfer
    # too: the source half of the intersection-union test is conservative here (p_source
    # 0.09 with 99 permutations on seed 0), the target half is not
    assert rows.loc["IT", "p_target"] < 0.05 and rows.loc["IT", "p_source"] <= 0.15
    assert (out.p == np.maximum(out.p_source, out.p_target)).all()
    np.testing.assert_allclose(out.p_fdr, scipy.stats.false_discovery_control(out.p))
    # no memorability code in monkey V1: the transfer of its decoder is at chance
    assert rows.loc["V1", "p"] > 0.01  # p is uniform under the null: a 1% level


def test_cross_decode_components_in_the_cubes_precision(cubes):
    """With a PCA first, a float32 cube is decomposed in float32 (half the memory of a
    whole-brain ROI in the client): the same decoding as its float64 copy. The PCA scores
    agree to ~1e-5; the Pearson r of the decoders and their chance level to 0.005 (the
    ridge maps' alpha choice and the rank ties of the near-constant predictions of a
    decoder without signal amplify rounding: Spearman rho moves by up to ~0.02 there)."""
    h, m = cubes["human"], cubes["monkey"]
    assert h.response.dtype == np.float32
    h64 = h.assign(response=h.response.astype(np.float64))
    kw = {"n_permutations": 19, "n_components": 5}
    out32 = cross_decode(m, h, ["IT", "V1"], ["FFA", "LOC"], **kw)
    out64 = cross_decode(m, h64, ["IT", "V1"], ["FFA", "LOC"], **kw)
    assert len(out32) == 4 and (out32.target_n_channels > 5).all()
    np.testing.assert_allclose(out32.pearson_r, out64.pearson_r, atol=5e-3)
    np.testing.assert_allclose(out32.chance_mean, out64.chance_mean, atol=5e-3)
    np.testing.assert_allclose(out32.spearman_rho, out64.spearman_rho, atol=0.05)
    assert (out32.target_n_channels == out64.target_n_channels).all()


def test_cross_decode_too_few_images(cubes):
    h, m = cubes["human"], cubes["monkey"]
    out = cross_decode(h, m, "FFA", "IT")
    assert out.empty and list(out.columns) == list(DECODING_COLUMNS)
    assert "of sub-01 are not in monkeyN" in out.attrs["reason"]
    out = cross_decode(m, h, "IT", "FFA", min_images=500)
    assert out.empty and "labelled images of the train split are shared" in out.attrs["reason"]


def test_bridge_runs_all_three(cubes):
    h, m = cubes["human"], cubes["monkey"]
    out = bridge(
        h, m, ["FFA", "V1"], ["IT"], n_permutations=49, n_bootstrap=0, n_decoding_permutations=9
    )
    assert sorted(out) == ["decoding", "effects", "rsa"]
    assert len(out["effects"]) == 6  # train rows, then the test images apart
    trials = out["effects"].trials.tolist()
    assert trials[:3] == ["single (train)"] * 3
    assert all(t.startswith("mean of ") and t.endswith(" (test)") for t in trials[3:])
    assert sorted(out["rsa"].level.unique()) == ["concept", "image"] and len(out["rsa"]) == 4
    assert len(out["decoding"]) == 2 and set(out["decoding"].direction) == {"monkeyN->sub-01"}
    assert "sub-01->monkeyN" in out["decoding"].attrs["reasons"]
    assert isinstance(out["effects"], pd.DataFrame)


def test_effects_send_no_resampling_tables_to_a_cluster(cubes):
    """On a distributed client, the cubes are reduced there, and the permutations and
    bootstrap samples of the small ROI values are drawn in this process: no graph carries
    the resampling tables (at real size they made a 36 MB graph)."""
    import warnings

    import dask
    from distributed import Client

    h, m = cubes["human"], cubes["monkey"]
    n = len(_shared_labelled(h, m))
    tables = n * 2 * 4000 * 8  # permutation indices and bootstrap weights, float64 at least
    limit = {"distributed.admin.large-graph-warning-threshold": f"{tables // 4}B"}
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        with dask.config.set(limit), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            c.submit(np.sum, np.ones(tables // 8)).result()  # the control: data in a graph
            eff = shared_effects(h, m, ["FFA"], ["IT"], n_permutations=3999, n_bootstrap=3999)
    large = [str(w.message) for w in seen if "large graph" in str(w.message)]
    assert len(large) == 1, large  # the control only
    assert len(eff) == 2 and np.isfinite(eff.r).all()


def test_bridge_with_an_area_left_without_channels(cubes):
    """An area whose channels a reliability filter removed gives NaN rows with a reason,
    not an error (at real size a strict threshold can empty V1 of one monkey)."""
    h, m = cubes["human"], cubes["monkey"]
    v1 = m.area.values == "V1"
    m = m.assign_coords(roi_mask=m.roi_mask.where(~xr.DataArray(v1, dims="channel"), False))
    out = bridge(h, m, ["FFA"], ["V1", "IT"], n_permutations=19, n_bootstrap=9,
                 n_decoding_permutations=3)  # fmt: skip
    rsa = out["rsa"].set_index("monkey_area")
    assert np.isnan(rsa.loc["V1", "rsa_r"]).all() and np.isfinite(rsa.loc["IT", "rsa_r"]).all()
    eff = out["effects"].set_index("roi")
    assert np.isfinite(eff.loc["IT", "r"]).all()
