"""A small pipeline spec over synthetic data, shared by the pipeline and cluster tests."""

from pathlib import Path

import yaml


def spec_dict(name: str = "tiny", title: str | None = "tiny run", **analyses) -> dict:
    """A small spec over the synthetic data in ``raw/`` (next to the spec file).

    ``analyses`` update the named analysis sections; ``title=None`` leaves out the report section.
    """
    spec = {
        "name": name,
        "inputs": {
            "memorability": "raw/things/THINGS_Memorability_Scores.csv",
            "concepts": "raw/things/Concept_to_category_linking.csv",
            "cubes": [
                {
                    "name": "sub-01",
                    "kind": "things-fmri",
                    "input": "raw/things-fmri/betas_csv",
                    "subject": "sub-01",
                },
                {
                    "name": "monkeyN",
                    "kind": "tvsd-trials",
                    "input": "raw/tvsd/monkeyN",
                    "monkey": "N",
                },
            ],
        },
        "rois": {"things-fmri": {"names": ["FFA", "V1", "IT"]}},
        "analyses": {
            "correlation": {"n_permutations": 49, "n_bootstrap": 49},
            "timecourse": {"n_permutations": 19},
            "models": {"models": ["ridge"], "cv": 3, "n_permutations": 3},
            "bridge": {
                "pairs": [["sub-01", "monkeyN"]],
                "n_bootstrap": 19,
                "rsa": {"level": "concept", "n_permutations": 19},
                "decoding": False,
            },
        },
        "report": {"title": "tiny run"},
    }
    if title is None:
        del spec["report"]
    for section, changes in analyses.items():
        spec["analyses"][section].update(changes)
    return spec


def write_spec(folder: Path, filename: str = "tiny.yaml", **kwargs) -> Path:
    """Write :func:`spec_dict` (same keyword arguments) as YAML into ``folder``."""
    path = folder / filename
    path.write_text(yaml.safe_dump(spec_dict(**kwargs), sort_keys=False))
    return path
