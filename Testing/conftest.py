"""Shared fixtures: the real data beside the checkout, the bundled sample case, and small models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CollaGANImpute"))

SHARED_DATA = REPO.parent / "shared" / "data"
MANIFEST = SHARED_DATA / "manifest.json"
CONTRASTS = ["t1", "t1gd", "t2", "flair"]


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.skip(f"real data not found: expected {MANIFEST} (the shared BraTS-style subjects beside the checkout)")
    return json.loads(MANIFEST.read_text())


def subject_files(manifest: dict, name: str, group: str = "subjects") -> dict[str, Path]:
    entry = manifest[group][name]
    return {key: SHARED_DATA / entry["dir"] / entry[key] for key in CONTRASTS}


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small untrained 4-contrast generator with its card: fast enough for geometry and CLI tests."""
    import torch

    from CollaGANImputeLib.model_io import save_model
    from CollaGANImputeLib.networks import Generator, GeneratorConfig

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_model(generator, CONTRASTS, path, {"description": "untrained test model"})


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from CollaGANImputeLib.model_io import load_model

    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def sample_files() -> dict[str, Path]:
    from CollaGANImputeLib.demo import sample_case_files

    return sample_case_files(CONTRASTS)
