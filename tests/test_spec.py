"""Pipeline specs: every error is one line naming the file and the key path; stable hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import memxr.pipeline
from memxr.errors import InputError
from memxr.pipeline.spec import SpecError, canonical_json, load_spec, validate_spec

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

BASE = {
    "name": "demo",
    "inputs": {
        "memorability": "things/scores.csv",
        "concepts": "things/concepts.csv",
        "cubes": [
            {"name": "sub-01", "kind": "things-fmri", "input": "fmri", "subject": "1"},
            {"name": "monkeyN", "kind": "tvsd", "input": "tvsd/monkeyN", "monkey": "monkeyN"},
            {"name": "trialsN", "kind": "tvsd-trials", "input": "tvsd/monkeyN", "monkey": "n"},
        ],
    },
    "analyses": {
        "correlation": {"n_permutations": 99},
        "models": {"cv": 3},
        "bridge": {"pairs": [["sub-01", "monkeyN"]]},
    },
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The files BASE refers to (empty files are enough for validation)."""
    (tmp_path / "things").mkdir()
    for name in ("scores.csv", "concepts.csv"):
        (tmp_path / "things" / name).write_text("x\n")
    (tmp_path / "fmri").mkdir()
    for suffix in ("ResponseData.h5", "VoxelMetadata.csv", "StimulusMetadata.csv"):
        (tmp_path / "fmri" / f"sub-01_{suffix}").write_text("")
    (tmp_path / "tvsd" / "monkeyN").mkdir(parents=True)
    for name in ("THINGS_normMUA.mat", "THINGS_MUA_trials.mat"):
        (tmp_path / "tvsd" / "monkeyN" / name).write_text("")
    return tmp_path


def _write(folder: Path, spec: dict | str, name: str = "demo.yaml") -> Path:
    path = folder / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def _edited(**changes) -> dict:
    """BASE with ``changes`` applied at dotted key paths (None deletes)."""
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = spec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return spec


def _error(folder: Path, spec: dict | str, check_files: bool = True) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(_write(folder, spec), check_files=check_files)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_spec_is_normalized_with_defaults(tree):
    spec = load_spec(_write(tree, BASE))
    cubes = spec.cubes
    assert [c["subject"] for c in cubes] == ["sub-01", None, None]
    assert [c["monkey"] for c in cubes] == [None, "N", "N"]
    corr = spec.analyses["correlation"]
    assert corr == {
        "methods": ["pearson", "spearman"],
        "how": ["mean", "l2"],
        "splits": ["train", "test"],
        "n_permutations": 99,
        "n_bootstrap": 1000,
        "groups": "concept",
        "seed": 0,
        "control_category": False,
        "within_concept": True,
        "pool": True,
    }
    assert spec.data["inputs"]["covariates"] is None
    for section in ("timecourse", "comparisons", "latency", "variance_partition"):
        assert spec.analyses[section] is None
    assert spec.analyses["models"]["cv"] == 3
    # the defaults that scale: linear models and sequential permutation p-values
    assert spec.analyses["models"]["models"] == ["ridge", "linear_svc"]
    assert spec.analyses["models"]["early_stop"] == 10
    assert spec.analyses["bridge"]["pairs"] == [["sub-01", "monkeyN"]]
    assert spec.analyses["bridge"]["decoding"] == {
        "enabled": True,
        "n_permutations": 200,
        "disjoint_concepts": True,
        "n_components": 100,
    }
    assert spec.data["inputs"]["memorability_reliability"] == 0.45
    assert spec.rois("tvsd-trials") is spec.data["rois"]["tvsd"]
    assert spec.resolve("fmri") == (tree / "fmri").resolve()
    assert spec.name == "demo" and spec.root == tree.resolve()


def test_tvsd_normalize_key(tree):
    """Time-resolved TVSD cubes are normalised per day unless ``rois.tvsd.normalize: false``."""
    assert load_spec(_write(tree, BASE)).rois("tvsd-trials")["normalize"] is True
    off = load_spec(_write(tree, _edited(rois={"tvsd": {"normalize": False}})))
    assert off.rois("tvsd-trials")["normalize"] is False
    assert _error(tree, _edited(rois={"tvsd": {"normalize": "yes"}})) == (
        "demo.yaml: rois.tvsd.normalize: expected true or false, got 'yes'"
    )
    assert _error(tree, _edited(rois={"things-fmri": {"normalize": True}})) == (
        "demo.yaml: rois.things-fmri: unknown key 'normalize'"
    )


def test_unknown_key_with_suggestion(tree):
    spec = _edited(analyses__modles={"cv": 3})
    assert (
        _error(tree, spec) == "demo.yaml: analyses: unknown key 'modles' (did you mean 'models'?)"
    )
    spec = _edited(inputs__cubes__0__subjct="sub-01")
    assert _error(tree, spec) == (
        "demo.yaml: inputs.cubes[0]: unknown key 'subjct' (did you mean 'subject'?)"
    )
    assert _error(tree, _edited(nmae="x")) == (
        "demo.yaml: spec: unknown key 'nmae' (did you mean 'name'?)"
    )
    assert _error(tree, _edited(zzz=1)) == "demo.yaml: spec: unknown key 'zzz'"


def test_wrong_types(tree):
    assert _error(tree, _edited(analyses__models__cv="five")) == (
        "demo.yaml: analyses.models.cv: expected int, got 'five'"
    )
    assert _error(tree, _edited(analyses__correlation__n_permutations=True)) == (
        "demo.yaml: analyses.correlation.n_permutations: expected int, got True"
    )
    assert _error(tree, _edited(analyses__models__cv=1)) == (
        "demo.yaml: analyses.models.cv: expected an int >= 2, got 1"
    )
    assert _error(tree, _edited(analyses__correlation__methods=["pearson", "kendall"])) == (
        "demo.yaml: analyses.correlation.methods[1]: expected one of pearson, spearman,"
        " got 'kendall'"
    )
    assert _error(tree, _edited(analyses__models__early_stop=-1)) == (
        "demo.yaml: analyses.models.early_stop: expected an int >= 0, got -1"
    )
    assert _error(tree, _edited(analyses__models__models=["ridgee"])).endswith(
        "got 'ridgee' (did you mean 'ridge'?)"
    )
    assert _error(tree, _edited(rois={"tvsd": {"windows": {"IT": [175, 75]}}})) == (
        "demo.yaml: rois.tvsd.windows.IT: start must be before stop, got [175, 75]"
    )
    assert _error(tree, _edited(inputs__cubes="sub-01")) == (
        "demo.yaml: inputs.cubes[0]: expected a mapping, got 'sub-01'"
    )


def test_reliability_scales_and_memorability_reliability(tree):
    """A threshold names its scale; auto compares on the single-trial scale only."""
    tvsd = load_spec(_write(tree, _edited(rois={"tvsd": {"reliability": {"threshold": 0.3}}})))
    assert tvsd.data["rois"]["tvsd"]["reliability"] == {
        "by": "auto",
        "threshold": 0.3,
        "scale": "single_trial",
    }
    named = _edited(rois={"things-fmri": {"reliability": {"by": "nc_testset", "threshold": 5}}})
    assert load_spec(_write(tree, named)).data["rois"]["things-fmri"]["reliability"] == {
        "by": "nc_testset",
        "threshold": 5.0,
        "scale": "native",
    }
    assert _error(tree, _edited(rois={"tvsd": {"reliability": {"threshold": 20}}})) == (
        "demo.yaml: rois.tvsd.reliability.threshold: 20 is not a single-trial reliability"
        " (between -1 and 1); for a measure in its own units (nc_testset: percent) name it in"
        " by: and add scale: native"
    )
    auto_native = {"tvsd": {"reliability": {"threshold": 0.3, "scale": "native"}}}
    assert _error(tree, _edited(rois=auto_native)).startswith(
        "demo.yaml: rois.tvsd.reliability.scale: by: auto compares on the single-trial scale"
    )
    assert _error(tree, _edited(inputs__memorability_reliability=0)) == (
        "demo.yaml: inputs.memorability_reliability: expected a reliability in (0, 1], got 0"
    )
    assert _error(tree, _edited(analyses__timecourse={"cluster_threshold": -1})) == (
        "demo.yaml: analyses.timecourse.cluster_threshold: expected a number > 0, got -1"
    )
    assert _error(tree, _edited(analyses__models__splits=["train", "val"])).startswith(
        "demo.yaml: analyses.models.splits[1]: expected one of train, test, got 'val'"
    )


def test_missing_and_inconsistent_keys(tree):
    assert _error(tree, _edited(name=None)) == "demo.yaml: spec: missing key 'name'"
    assert _error(tree, _edited(inputs__cubes__0__subject=None)) == (
        "demo.yaml: inputs.cubes[0]: missing key 'subject' (needed by kind 'things-fmri')"
    )
    assert _error(tree, _edited(inputs__cubes__1__subject="sub-01")) == (
        "demo.yaml: inputs.cubes[1]: key 'subject' does not apply to kind 'tvsd'"
    )
    assert _error(tree, _edited(inputs__cubes__1__monkey="X")) == (
        "demo.yaml: inputs.cubes[1].monkey: expected N or F (or monkeyN, monkeyF), got 'X'"
    )
    assert _error(tree, _edited(inputs__cubes__1__name="sub-01")) == (
        "demo.yaml: inputs.cubes[1].name: 'sub-01' is already inputs.cubes[0]"
    )
    assert _error(tree, _edited(inputs__cubes__1__name="monkey N")) == (
        "demo.yaml: inputs.cubes[1].name: 'monkey N' may hold only letters, digits, '_', '.', '-'"
    )
    assert _error(tree, _edited(analyses__bridge__pairs=[["sub-01", "monkeyM"]])) == (
        "demo.yaml: analyses.bridge.pairs[0][1]: no cube named 'monkeyM' (did you mean 'monkeyN'?)"
    )
    assert _error(tree, _edited(analyses__bridge__pairs=["monkeyN~sub-01"])) == (
        "demo.yaml: analyses.bridge.pairs[0][0]: 'monkeyN' is a tvsd cube,"
        " not a human (things-fmri) one"
    )
    spec = _edited(rois={"tvsd": {"names": ["V1", "MT"]}})
    assert _error(tree, spec).startswith(
        "demo.yaml: rois.tvsd.windows: ROI 'MT' of the time-resolved cubes needs a time window"
    )


def test_missing_files_name_the_key_and_the_path(tree):
    (tree / "things" / "scores.csv").unlink()
    assert _error(tree, BASE) == ("demo.yaml: inputs.memorability: no such file: things/scores.csv")
    spec = _edited(inputs__memorability=None, inputs__cubes__1__input="tvsd/monkeyX")
    assert _error(tree, spec) == "demo.yaml: inputs.cubes[1].input: does not exist: tvsd/monkeyX"
    (tree / "fmri" / "sub-01_VoxelMetadata.csv").unlink()
    assert _error(tree, _edited(inputs__memorability=None)) == (
        "demo.yaml: inputs.cubes[0].input: no sub-01_VoxelMetadata.csv in fmri"
    )
    # without the file checks the same spec is valid
    assert load_spec(_write(tree, _edited(inputs__memorability=None)), check_files=False)


def test_bad_yaml_and_unsafe_tags_are_refused(tree):
    message = _error(tree, "name: demo\ninputs: [unclosed\n")
    assert message.startswith("demo.yaml: yaml: line 3, column 1: ")
    marker = tree / "pwned"
    unsafe = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    assert _error(tree, unsafe) == (
        "demo.yaml: yaml: line 1, column 7: tag !!python/object/apply:os.system is not allowed"
        " (safe YAML only)"
    )
    assert not marker.exists()
    assert (
        _error(tree, "") == "demo.yaml: spec: expected a mapping of keys (name, inputs, ...),"
        " got nothing"
    )
    with pytest.raises(SpecError, match=r"^nope\.yaml: spec: cannot read"):
        load_spec(tree / "nope.yaml")


def test_spec_error_is_an_input_error(tree):
    with pytest.raises(InputError) as info:
        load_spec(_write(tree, _edited(analyses__models__cv="five")))
    assert (info.value.file, info.value.field) == ("demo.yaml", "analyses.models.cv")


def test_spec_hash_is_stable(tree):
    a = load_spec(_write(tree, BASE, "a.yaml"))
    # same content, other key order, other formatting, defaults written out
    reordered = dict(reversed(list(yaml.safe_load(yaml.safe_dump(BASE)).items())))
    reordered["analyses"]["correlation"]["groups"] = "concept"
    reordered["inputs"]["cubes"][0]["subject"] = "sub-01"
    b = load_spec(_write(tree, yaml.safe_dump(reordered, default_flow_style=True), "b.yaml"))
    assert a.spec_hash == b.spec_hash
    assert a.spec_hash == load_spec(tree / "a.yaml").spec_hash
    import hashlib

    assert a.spec_hash == hashlib.sha256(canonical_json(a.data).encode()).hexdigest()
    c = load_spec(_write(tree, _edited(analyses__correlation__n_permutations=100), "c.yaml"))
    assert c.spec_hash != a.spec_hash


@pytest.mark.parametrize("name", ["demo", "things_fmri", "tvsd", "cross_species"])
def test_shipped_pipelines_are_valid(name):
    folder = Path(memxr.pipeline.__file__).parent if name == "demo" else PIPELINES
    spec = load_spec(folder / f"{name}.yaml", check_files=False)
    assert spec.name == name
    assert spec.cubes
    if name != "demo":
        with pytest.raises(SpecError, match=rf"^{name}\.yaml: inputs\.memorability: no such file"):
            load_spec(PIPELINES / f"{name}.yaml")


def test_shipped_pipelines_cover_the_data():
    fmri = load_spec(PIPELINES / "things_fmri.yaml", check_files=False)
    assert [c["subject"] for c in fmri.cubes] == ["sub-01", "sub-02", "sub-03"]
    assert {"FFA", "LOC", "PPA", "EBA", "V1", "IT"} <= set(
        fmri.data["rois"]["things-fmri"]["names"]
    )
    tvsd = load_spec(PIPELINES / "tvsd.yaml", check_files=False)
    kinds = sorted((c["kind"], c["monkey"]) for c in tvsd.cubes)
    assert kinds == [("tvsd", "F"), ("tvsd", "N"), ("tvsd-trials", "F"), ("tvsd-trials", "N")]
    cross = load_spec(PIPELINES / "cross_species.yaml", check_files=False)
    assert len(cross.analyses["bridge"]["pairs"]) == 6


def test_validate_spec_without_files():
    data = validate_spec(BASE, "x.yaml", check_files=False)
    assert data["report"] == {"title": None} and data["catalog"] is None
    with pytest.raises(ValueError, match="check_files needs the root"):
        validate_spec(BASE, "x.yaml")
