"""Shared fixtures: the real data beside the checkout, the bundled sample case, and small models."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CollaGANImpute"))

SHARED_DATA = REPO.parent / "shared" / "data"
MANIFEST = SHARED_DATA / "manifest.json"
CONTRASTS = ["t1", "t1gd", "t2", "flair"]


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where a test renders a README screenshot: a temporary folder, so a test run never changes the
    checkout, unless COLLAGAN_SCREENSHOTS names a folder (Resources/Screenshots refreshes the README's)."""
    folder = os.environ.get("COLLAGAN_SCREENSHOTS")
    path = REPO / folder if folder else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.skip(f"real data not found: expected {MANIFEST} (the shared BraTS-style subjects beside the checkout)")
    return json.loads(MANIFEST.read_text())


def subject_files(manifest: dict, name: str, group: str = "subjects") -> dict[str, Path]:
    entry = manifest[group][name]
    return {key: SHARED_DATA / entry["dir"] / entry[key] for key in CONTRASTS}


# A 64 x 64 x 12 block of the middle of a shared subject: small enough to impute every contrast in seconds.
SHARED_CROP = (slice(88, 152), slice(88, 152), slice(70, 82))


def crop_volumes(files: dict, region: tuple, folder: Path, prefix: str = "") -> dict[str, Path]:
    """Each volume of `files` cut to `region` (x, y, z index slices), written as folder/PREFIXkey.nii.gz."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, path in files.items():
        paths[key] = folder / f"{prefix}{key}.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(path))[region], str(paths[key]))
    return paths


# A 96 x 96 x 24 block of TCGA-DU-7294 with tumour in it: real voxels, fast to impute with a small model.
TUMOUR_CROP = (slice(72, 168), slice(72, 168), slice(60, 84))


@pytest.fixture(scope="module")
def tumour_crop(manifest, tmp_path_factory) -> dict[str, Path]:
    """TUMOUR_CROP of a real study's four contrasts, as files."""
    return crop_volumes(subject_files(manifest, "TCGA-DU-7294"), TUMOUR_CROP, tmp_path_factory.mktemp("crop"))


def cropped_manifest(manifest: dict, subjects: Sequence[str], root: Path, region: tuple = SHARED_CROP) -> Path:
    """Shared subjects cut to `region`, each in root/<subject>/<key>.nii.gz, with a manifest.json listing them."""
    entries = {}
    for name in subjects:
        paths = crop_volumes(subject_files(manifest, name), region, root / name)
        entries[name] = {"dir": name, **{key: path.name for key, path in paths.items()}}
    (root / "manifest.json").write_text(json.dumps({"subjects": entries}))
    return root


def assert_same_grid(image, reference) -> None:
    """Same size, spacing, origin and direction: the one check of 'written on the reference grid'."""
    assert image.GetSize() == reference.GetSize()
    assert image.GetSpacing() == reference.GetSpacing()
    assert image.GetOrigin() == reference.GetOrigin()
    assert image.GetDirection() == reference.GetDirection()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small untrained 4-contrast generator with its card: fast enough for geometry and CLI tests."""
    import torch
    from CollaGANImputeLib.model.networks import Generator, GeneratorConfig
    from CollaGANImputeLib.model.weights import save_model

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_model(generator, CONTRASTS, path, {"description": "untrained test model"})


@pytest.fixture(scope="session")
def tiny_any_model_path(tiny_model_path, tmp_path_factory) -> Path:
    """The same tiny generator with a card saying it was trained for any subset of absent inputs."""
    from CollaGANImputeLib.model.weights import load_model, save_model

    path = tmp_path_factory.mktemp("models") / "tiny_any.safetensors"
    return save_model(load_model(tiny_model_path).generator, CONTRASTS, path,
                      {"description": "untrained test model", "missing_inputs": {"min": 1, "max": 3}})


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from CollaGANImputeLib.model.weights import load_model

    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def sample_files() -> dict[str, Path]:
    from CollaGANImputeLib.analysis.demo import sample_case_files

    return sample_case_files(CONTRASTS)


def _scripted_module_stand_in(slicer) -> types.ModuleType:
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__.removesuffix("Logic")

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
                node.UnRegister(None)
                node.SetSingletonTag(self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node = slicer.mrmlScene.AddNode(node)
            return node

    module.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(module, name, type(name, (), {}))
    return module


@pytest.fixture(scope="module")
def module():
    """CollaGANImpute.py imported against slicer-core and the two stand-ins; undone afterwards."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -c constraints.txt slicer-core)")
    added = {}
    if importlib.util.find_spec("qt") is None:
        added["qt"] = types.ModuleType("qt")
    added["slicer.ScriptedLoadableModule"] = _scripted_module_stand_in(slicer)
    sys.modules.update(added)
    spec = importlib.util.spec_from_file_location("CollaGANImpute", REPO / "CollaGANImpute" / "CollaGANImpute.py")
    loaded = importlib.util.module_from_spec(spec)
    added["CollaGANImpute"] = loaded
    sys.modules["CollaGANImpute"] = loaded
    spec.loader.exec_module(loaded)
    yield loaded
    for name in added:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def reading_module(module):
    """ReadingSession.py imported the same way; it imports CollaGANImpute (the `module` fixture's)."""
    spec = importlib.util.spec_from_file_location("ReadingSession", REPO / "CollaGANImpute" / "ReadingSession.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["ReadingSession"] = loaded
    spec.loader.exec_module(loaded)
    yield loaded
    sys.modules.pop("ReadingSession", None)


def write_dicom_series(image, folder: Path, uid: str, **tags: str) -> None:
    """`image` written as a DICOM series with the naming tags given (SeriesDescription=..., ContrastBolusAgent=...)."""
    import numpy as np
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    codes = {"SeriesDescription": "0008|103e", "ProtocolName": "0018|1030", "ContrastBolusAgent": "0018|0010"}
    integer = sitk.Cast(image, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(integer.GetDepth()):
        plane = integer[:, :, k]
        position = integer.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0020|0032", "\\".join(f"{v:.6f}" for v in position)),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in np.array(integer.GetDirection()).reshape(3, 3)[:, :2].T.ravel())),
                           ("0020|0013", str(k + 1)), ("0020|000e", uid), ("0008|0060", "MR"),
                           *((codes[name], value) for name, value in tags.items())):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
