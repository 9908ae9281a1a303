"""The Slicer module's logic on a real MRML scene (slicer-core), without the Slicer application.

slicer-core has Slicer's MRML and logic libraries but neither Qt nor ScriptedLoadableModule, so the
module file is imported with two stand-ins: an empty `qt` module (the logic never uses Qt) and a
minimal `slicer.ScriptedLoadableModule` whose Logic base finds or makes the parameter node as Slicer's
does. Real volumes are cut to 8 axial slices (geometry kept) and the model is a tiny untrained one, so
each imputation takes about a second on two CPU cores; training through the logic is marked slow.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CONTRASTS, REPO, subject_files

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -c constraints.txt slicer-core)")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the 'slicer' package found is not slicer-core (no vtkMRMLScene)", allow_module_level=True)

from CollaGANImputeLib.core.errors import Cancelled, InputError, ModelError
from CollaGANImputeLib.inference.imputation import impute as engine_impute
from CollaGANImputeLib.inference.synthesis import precision_of
from CollaGANImputeLib.io import mrml
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.scene import describe
from CollaGANImputeLib.scene.imputation import ROLE_ATTRIBUTE, UNCERTAINTY_COLORS


@pytest.fixture
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


@pytest.fixture(scope="module")
def cropped(manifest, tmp_path_factory):
    """Subject -> contrast -> file: real volumes cut to 8 axial slices, their geometry kept."""
    out = tmp_path_factory.mktemp("cropped")
    result = {}
    for subject in ("BraTS-GLI-00001-000", "AURORA-MET-example"):
        files = {}
        for key, path in subject_files(manifest, subject).items():
            files[key] = out / f"{subject}_{key}.nii.gz"
            sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 70:78], str(files[key]))
        result[subject] = files
    return result


def load_node(scene, path: Path, name: str):
    """A volume node read by Slicer's own reader (the storage node the application would use)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    return node


def synthetic_node(scene, name: str, value_seed: int, zero: bool = False):
    """A small volume with a bright ellipsoid 'brain' for fast failure and batch tests."""
    z, y, x = np.mgrid[:8, :32, :32]
    brain = ((x - 16) / 12) ** 2 + ((y - 16) / 10) ** 2 + ((z - 4) / 5) ** 2 < 1
    rng = np.random.default_rng(value_seed)
    array = np.where(brain, 100 + 20 * rng.random(brain.shape), 0).astype(np.float32) * (not zero)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    return mrml.add_volume_node(image, name, scene)


def snapshot(node):
    return slicer.util.arrayFromVolume(node).copy(), mrml.ijk_to_ras(node)


# ----- the node <-> image adapter -------------------------------------------------------------------
def test_adapter_keeps_geometry_of_ras_and_oblique_volumes(manifest, scene):
    paths = [subject_files(manifest, "AURORA-MET-example")["t1"], subject_files(manifest, "TCGA-FG-6692-native", "raw")["t1"]]
    for path in paths:
        node = load_node(scene, path, path.name)
        image = mrml.image_from_node(node)
        from_file = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
        same_place = sitk.Resample(from_file, image, sitk.Transform(), sitk.sitkNearestNeighbor)
        assert np.array_equal(sitk.GetArrayFromImage(same_place), sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)))
        back = mrml.add_volume_node(image, "back", scene)
        assert np.array_equal(mrml.ijk_to_ras(back), mrml.ijk_to_ras(node))
        assert np.array_equal(slicer.util.arrayFromVolume(back), slicer.util.arrayFromVolume(node))


def test_adapter_applies_a_linear_parent_transform(scene):
    node = synthetic_node(scene, "t1", 0)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(np.array(
        [[1, 0, 0, 5.0], [0, 1, 0, -2.0], [0, 0, 1, 1.5], [0, 0, 0, 1]])))
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert np.allclose(mrml.image_from_node(node).GetOrigin(), (-5.0, 2.0, 1.5))


# ----- imputation through the logic ------------------------------------------------------------------
@pytest.mark.parametrize("subject", ["BraTS-GLI-00001-000", "AURORA-MET-example"])
def test_logic_output_matches_engine_on_reference_grid(module, scene, cropped, tiny_model_path, subject):
    files = cropped[subject]
    nodes = {key: load_node(scene, path, f"{subject}-{key}") for key, path in files.items()}
    inputs = {k: nodes[k] for k in CONTRASTS if k != "t1gd"}
    before = {k: snapshot(n) for k, n in nodes.items()}

    logic = module.CollaGANImputeLogic()
    output = logic.impute(inputs, "t1gd", weights=str(tiny_model_path),
                          real=nodes["t1gd"] if subject == "AURORA-MET-example" else None)

    assert output.GetName() == "T1Gd (CollaGAN)"
    reference = nodes["t1"]  # first input in model order
    assert np.array_equal(mrml.ijk_to_ras(output), mrml.ijk_to_ras(reference))
    assert output.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
    expected = engine_impute({k: files[k] for k in inputs}, "t1gd", load_model(tiny_model_path)).image
    assert np.allclose(slicer.util.arrayFromVolume(output), sitk.GetArrayFromImage(expected), atol=1e-5)
    for key, node in nodes.items():
        array, matrix = before[key]
        assert np.array_equal(slicer.util.arrayFromVolume(node), array) and np.array_equal(mrml.ijk_to_ras(node), matrix)
    display = output.GetDisplayNode()
    assert display is not None and not display.GetAutoWindowLevel() and display.GetWindow() > 0
    if subject == "AURORA-MET-example":  # evaluation mode: metrics and a |difference| volume on the same grid
        metrics = logic.lastOutcome.comparison.metrics
        assert all(np.isfinite(metrics[m]) for m in ("ssim_brain", "psnr_brain", "nmse_brain"))
        assert -1.0 <= metrics["ssim_brain"] <= 1.0  # an untrained model may score below 0
        difference = logic.lastOutcome.differenceNode
        assert difference.GetName() == "T1Gd |difference|"
        assert np.array_equal(mrml.ijk_to_ras(difference), mrml.ijk_to_ras(reference))


def test_reference_contrast_sets_the_output_grid_for_native_oblique_inputs(module, scene, manifest, tiny_model_path, tmp_path):
    files = subject_files(manifest, "TCGA-FG-6692-native", "raw")
    files["t2"] = tmp_path / "t2_slab.nii.gz"  # the reference grid decides the work: keep 4 of its slices
    sitk.WriteImage(sitk.ReadImage(str(subject_files(manifest, "TCGA-FG-6692-native", "raw")["t2"]))[:, :, 11:15], str(files["t2"]))
    nodes = {k: load_node(scene, files[k], k) for k in ("t1", "t2", "flair")}
    # 5.5 mm native slices fail the out-of-distribution checks; this test is about grids, so it forces them.
    output = module.CollaGANImputeLogic().impute(nodes, "t1gd", reference="t2", weights=str(tiny_model_path), force=True)
    assert np.array_equal(mrml.ijk_to_ras(output), mrml.ijk_to_ras(nodes["t2"]))
    assert output.GetImageData().GetDimensions() == nodes["t2"].GetImageData().GetDimensions()


def test_bad_model_file_leaves_the_scene_unchanged(module, scene, tiny_model_path, tmp_path):
    nodes = {k: synthetic_node(scene, k, i) for i, k in enumerate(("t1", "t2", "flair"))}
    corrupt = tmp_path / "corrupt.safetensors"
    data = bytearray(tiny_model_path.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    (tmp_path / "corrupt.json").write_text(tiny_model_path.with_suffix(".json").read_text())
    count = scene.GetNumberOfNodes()
    with pytest.raises(ModelError, match="does not match its model card"):
        module.CollaGANImputeLogic().impute(nodes, "t1gd", weights=str(corrupt))
    assert scene.GetNumberOfNodes() == count


def test_all_zero_input_is_named_and_leaves_the_scene_unchanged(module, scene, tiny_model_path):
    nodes = {"t1": synthetic_node(scene, "t1", 0), "t2": synthetic_node(scene, "empty T2", 1, zero=True),
             "flair": synthetic_node(scene, "flair", 2)}
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="T2 volume is all zero"):
        module.CollaGANImputeLogic().impute(nodes, "t1gd", weights=str(tiny_model_path))
    assert scene.GetNumberOfNodes() == count


def test_cancel_leaves_no_node_and_threaded_run_finishes(module, scene, tiny_model_path):
    nodes = {k: synthetic_node(scene, k, i) for i, k in enumerate(("t1", "t2", "flair"))}
    logic = module.CollaGANImputeLogic()
    count = scene.GetNumberOfNodes()
    with pytest.raises(Cancelled):
        logic.impute(nodes, "t1gd", weights=str(tiny_model_path), cancel=lambda: True, force=True)
    assert scene.GetNumberOfNodes() == count

    request = logic.prepareImputation(nodes, "t1gd", weights=str(tiny_model_path), force=True)  # 3 mm synthetic slices
    job = logic.startImputation(request)
    computed = job.wait()
    assert job.state().finished and job.state().done == job.state().total > 0
    outcome = logic.finishImputation(request, computed)
    assert np.array_equal(mrml.ijk_to_ras(outcome.outputNode), mrml.ijk_to_ras(nodes["t1"]))
    assert outcome.outputNode.GetAttribute(ROLE_ATTRIBUTE) == "imputed"


def test_a_cancel_after_the_work_ended_still_drops_its_result():
    """The panel polls every 100 ms: a Cancel pressed after the worker finished must not become nodes."""
    from CollaGANImputeLib.core.jobs import ThreadJob

    job = ThreadJob(lambda job: "volumes").start()
    assert job.wait() == "volumes"
    job.cancel()
    with pytest.raises(Cancelled):
        job.result()


def test_last_run_is_tied_to_its_nodes_and_forgotten_with_its_scene(module, scene, tiny_model_path, monkeypatch):
    """Evaluate and Show comparison use the run that made the output, and never a volume of a later scene
    that happens to get the same node ID; a |difference| that cannot be dressed leaves nothing behind."""
    inputs = {k: synthetic_node(scene, k, i) for i, k in enumerate(("t1", "t2", "flair"))}
    real = synthetic_node(scene, "real t1gd", 3)
    logic = module.CollaGANImputeLogic()
    output = logic.impute(inputs, "t1gd", real=real, weights=str(tiny_model_path), force=True)  # 3 mm synthetic slices
    outcome = logic.currentOutcome(output)
    assert outcome is logic.lastOutcome and outcome.inputNodes == inputs and outcome.realNode is real
    assert logic.currentOutcome(real) is None

    def undressable(node, *percentiles):
        raise RuntimeError("no display node")

    count, difference = scene.GetNumberOfNodes(), outcome.differenceNode
    monkeypatch.setattr(module.mrml, "set_window_to_brain", undressable)
    with pytest.raises(RuntimeError, match="no display node"):
        logic.evaluate(inputs["t1"])
    assert scene.GetNumberOfNodes() == count and outcome.differenceNode is difference and scene.IsNodePresent(difference)
    monkeypatch.undo()
    logic.evaluate(inputs["t1"])  # another real volume: the |difference| is replaced, the run remembers it
    assert outcome.realNode is inputs["t1"] and not scene.IsNodePresent(difference) and scene.IsNodePresent(outcome.differenceNode)

    outputID = output.GetID()
    scene.Clear(0)
    strangers = [synthetic_node(scene, f"new {i}", i) for i in range(6)]
    stranger = next(node for node in strangers if node.GetID() == outputID)  # the new scene reuses the ID ...
    assert logic.currentOutcome() is None and logic.currentOutcome(stranger) is None  # ... but not the run
    with pytest.raises(InputError, match="impute first"):
        logic.evaluate(stranger)


def test_comparison_shows_an_output_as_its_run_made_it(module, scene):
    """The scored contrast's output comes with the run's real volume and |difference| and the run's other
    outputs; another output of the run with neither, the first output beside it; a node the user deleted is left out."""
    inputs = {k: synthetic_node(scene, k, i) for i, k in enumerate(("t1", "t2"))}
    real = synthetic_node(scene, "real t1gd", 3)
    logic = module.CollaGANImputeLogic()
    output = logic.impute({**inputs, "flair": None}, "t1gd", real=real, force=True)  # the bundled model: any subset
    outcome = logic.lastOutcome
    flair = outcome.outputNodes["flair"]
    assert logic.comparisonOf(output) == {"inputNodes": inputs, "outputNode": output, "realNode": real,
                                          "differenceNode": outcome.differenceNode, "uncertaintyNode": None, "otherOutputs": {"flair": flair}}
    scene.RemoveNode(inputs["t2"])
    assert logic.comparisonOf(flair) == {"inputNodes": {"t1": inputs["t1"], "t2": None}, "outputNode": flair, "realNode": None,
                                         "differenceNode": None, "uncertaintyNode": None, "otherOutputs": {"t1gd": output}}
    assert logic.comparisonOf(real) is None and logic.comparisonOf(None) is None


def test_parameter_node_keeps_the_real_volume_with_the_missing_contrast(module, scene):
    """Choosing another missing contrast swaps volumes: its input becomes the real volume, and the old real volume
    goes back to its contrast's row; auto-assign puts the missing contrast's volume in Real."""
    from CollaGANImputeLib.scene import parameters

    volumes = {k: synthetic_node(scene, f"study-{k}", i) for i, k in enumerate(CONTRASTS)}
    node = module.CollaGANImputeLogic().getParameterNode()
    parameters.set_defaults(node)
    parameters.assign(node, volumes)
    assert node.GetNodeReference("Real") is volumes["t1gd"]
    assert parameters.input_nodes(node, CONTRASTS) == {k: volumes[k] for k in ("t1", "t2", "flair")}
    parameters.set_missing(node, "flair")
    assert node.GetParameter("Missing") == "flair" and node.GetNodeReference("Real") is volumes["flair"]
    assert parameters.input_nodes(node, CONTRASTS) == {k: volumes[k] for k in ("t1", "t1gd", "t2")}
    node.SetParameter("ModelPath", "/models/mine.safetensors")
    assert parameters.model_choice(node) == {"weights": "/models/mine.safetensors", "device": "auto"}
    assert parameters.imputation_options(node) == {"uncertainty": False, "prepare": False, "views": 1, "planes": 3}  # the default
    for box in ("Uncertainty", "Prepare", "BestQuality"):
        node.SetParameter(box, "true")
    node.SetParameter("ThreePlanes", "false")
    assert parameters.imputation_options(node) == {"uncertainty": True, "prepare": True, "views": 8, "planes": 1}


def test_panel_states_and_an_unreadable_model_card(module, tmp_path):
    """One job at a time, Score only for the contrast the last run imputed, and a model the panel cannot read
    said in words rather than raised."""
    state = dict(problems=[], missing="t1gd", inputs={"t1": object(), "t2": None}, running=False, analysing=False, has_card=True,
                 has_output=True, has_real=True, scored_contrast="t1gd")
    idle = describe.button_states(**state)
    assert idle["applyButton"] == {"text": "Impute", "enabled": True, "toolTip": "Impute T1Gd (and T2, left empty)"}
    assert idle["evaluateButton"]["enabled"] and idle["analyseButton"] == {"enabled": True, "text": "Analyse"}
    assert not describe.button_states(**{**state, "scored_contrast": "flair"})["evaluateButton"]["enabled"]
    running = describe.button_states(**{**state, "running": True})
    assert running["applyButton"]["text"] == "Cancel" and running["applyButton"]["enabled"]
    assert not any(running[n]["enabled"] for n in ("inputsCollapsibleButton", "showComparisonButton", "evaluateButton", "analyseButton"))
    analysing = describe.button_states(**{**state, "analysing": True})
    assert analysing["applyButton"] == {"text": "Impute", "enabled": False, "toolTip": "Wait for the analysis to finish, or cancel it"}
    assert analysing["analyseButton"] == {"enabled": True, "text": "Cancel"}
    refused = describe.button_states(**{**state, "problems": ["Select at least one input volume (T1, T2, FLAIR)"]})
    assert not refused["applyButton"]["enabled"] and refused["applyButton"]["toolTip"] == "Select at least one input volume (T1, T2, FLAIR)"
    card, error = module.CollaGANImputeLogic().readCard(str(tmp_path / "absent.safetensors"))
    assert card is None and error.startswith("Model not usable: ") and "absent" in error


def test_empty_rows_are_imputed_too_with_reliability_maps(module, scene, cropped, tiny_model_path, tmp_path):
    """A model trained for any subset: T1 alone gives T1Gd, T2 and FLAIR, each with its uncertainty overlay."""
    from CollaGANImputeLib.model.weights import save_model

    weights = save_model(load_model(tiny_model_path).generator, CONTRASTS, tmp_path / "any.safetensors",
                         {"description": "untrained test model", "missing_inputs": {"min": 1, "max": 3}})
    files = cropped["BraTS-GLI-00001-000"]
    nodes = {key: load_node(scene, path, f"case-{key}") for key, path in files.items()}
    logic = module.CollaGANImputeLogic()
    count = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    output = logic.impute({"t1": nodes["t1"], "t2": None, "flair": None}, "t1gd", weights=str(weights),
                          real=nodes["t1gd"], uncertainty=True)
    outcome = logic.lastOutcome
    assert output is outcome.outputNodes["t1gd"] and sorted(outcome.outputNodes) == ["flair", "t1gd", "t2"]
    how = f"three slice orientations averaged, {precision_of(load_model(weights).generator)}"  # the panel's status says how
    assert f"with {outcome.modelName} from {how} (intensities in brain standard deviations" in describe.outcome_status(outcome)
    assert logic.currentOutcome(outcome.outputNodes["flair"]) is outcome  # every output of the run is of that run
    assert sorted(outcome.uncertaintyNodes) == ["flair", "t1gd", "t2"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count + 3 + 3 + 1  # outputs, reliability maps, |difference|
    expected = engine_impute({"t1": files["t1"]}, "t2", load_model(weights)).image
    assert np.allclose(slicer.util.arrayFromVolume(outcome.outputNodes["t2"]), sitk.GetArrayFromImage(expected), atol=1e-5)
    for node in outcome.uncertaintyNodes.values():
        assert node.GetAttribute(ROLE_ATTRIBUTE) == "uncertainty"
        assert "flipped and shifted canvases" in node.GetAttribute("CollaGANImpute.Units")  # one input: nothing to drop
        assert np.array_equal(mrml.ijk_to_ras(node), mrml.ijk_to_ras(nodes["t1"]))
        assert node.GetDisplayNode().GetColorNodeID() == UNCERTAINTY_COLORS
        values = slicer.util.arrayFromVolume(node)
        assert np.all(values >= 0) and np.isfinite(values).all()


def test_prepare_adds_the_brain_it_found_as_a_segmentation(module, scene, cropped, tiny_model_path):
    """The panel's Prepare box: the engine's prepare pipeline (the given mask as the brain extractor), the result on
    the reference grid, and the brain mask on that grid as a one-segment segmentation; no label map is left behind."""
    files = cropped["BraTS-GLI-00001-000"]
    nodes = {key: load_node(scene, path, f"raw-{key}") for key, path in files.items() if key != "t1gd"}
    brain = sitk.ReadImage(str(files["t1"])) > 0
    mask = mrml.add_volume_node(sitk.Cast(brain, sitk.sitkFloat32), "given brain", scene)
    logic = module.CollaGANImputeLogic()
    output = logic.impute(nodes, "t1gd", mask=mask, weights=str(tiny_model_path), prepare=True, force=True)
    outcome = logic.lastOutcome
    assert np.allclose(mrml.ijk_to_ras(output), mrml.ijk_to_ras(nodes["t1"]), atol=1e-6)
    assert any("registered rigidly" in note for note in outcome.imputation.notes)
    segmentation = outcome.maskNode
    assert segmentation.IsA("vtkMRMLSegmentationNode") and segmentation.GetName() == "Brain mask (CollaGAN prepare)"
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "Brain"
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    expected = int(outcome.imputation.study.mask.sum())
    assert expected > 0 and abs(int(sitk.GetArrayViewFromImage(brain).sum()) - expected) < 0.05 * expected


def test_best_quality_averages_views_through_the_engine(module, scene, cropped, tiny_model_path):
    """The panel's Average 8 views asks the engine for 8 views; the logic passes any number through unchanged."""
    files = cropped["BraTS-GLI-00001-000"]
    nodes = {key: load_node(scene, path, f"views-{key}") for key, path in files.items() if key != "t1gd"}
    logic = module.CollaGANImputeLogic()
    plain = slicer.util.arrayFromVolume(logic.impute(nodes, "t1gd", weights=str(tiny_model_path))).copy()
    averaged = slicer.util.arrayFromVolume(logic.impute(nodes, "t1gd", weights=str(tiny_model_path), views=2))
    expected = engine_impute({k: files[k] for k in nodes}, "t1gd", load_model(tiny_model_path), views=2).image
    assert np.allclose(averaged, sitk.GetArrayFromImage(expected), atol=1e-5)
    assert not np.allclose(averaged, plain, atol=1e-4)


def test_three_orientations_go_through_the_engine(module, scene, cropped, tiny_model_path):
    """The panel's Three slice orientations, ticked by default, asks the engine for its default (planes=3), and unticked for
    planes=1; the logic passes either through unchanged."""
    files = cropped["BraTS-GLI-00001-000"]
    nodes = {key: load_node(scene, path, f"planes-{key}") for key, path in files.items() if key != "t1gd"}
    logic = module.CollaGANImputeLogic()
    engine = {planes: sitk.GetArrayFromImage(engine_impute({k: files[k] for k in nodes}, "t1gd", load_model(tiny_model_path),
                                                           planes=planes).image) for planes in (3, 1)}
    for planes, expected in engine.items():
        arrays = slicer.util.arrayFromVolume(logic.impute(nodes, "t1gd", weights=str(tiny_model_path), planes=planes))
        assert np.allclose(arrays, expected, atol=1e-5), planes
    default = engine_impute({k: files[k] for k in nodes}, "t1gd", load_model(tiny_model_path)).image
    assert np.array_equal(sitk.GetArrayFromImage(default), engine[3])
    assert not np.allclose(engine[1], engine[3], atol=1e-4)  # the axial pass alone differs


def test_input_problems_and_auto_assign(module, scene):
    logic = module.CollaGANImputeLogic()
    names = ["BraTS-GLI-00001-000-t1n", "BraTS-GLI-00001-000-t1c", "BraTS-GLI-00001-000-t2w", "TCGA_fla_bet"]
    nodes = [synthetic_node(scene, name, i) for i, name in enumerate(names)]
    synthetic_node(scene, "T1Gd (CollaGAN)", 9).SetAttribute(ROLE_ATTRIBUTE, "imputed")
    found = logic.assignVolumes(CONTRASTS)
    assert {k: v.GetName() for k, v in found.items()} == dict(zip(CONTRASTS, names))
    synthetic_node(scene, "second_flair", 5)
    assert "flair" not in logic.assignVolumes(CONTRASTS)  # two candidates: left for the user

    problems = logic.inputProblems(CONTRASTS, "t1gd", {"t1": nodes[0], "t2": nodes[0]})
    assert len(problems) == 2 and problems[0].startswith("Select a volume for FLAIR (this model was trained with 1 missing contrast")
    assert problems[1] == "T1 and T2 are the same volume 'BraTS-GLI-00001-000-t1n'"
    assert logic.inputProblems(CONTRASTS, "t1gd", {"t1": nodes[0], "t2": nodes[2], "flair": nodes[3]}) == []
    # A model trained for any subset takes empty rows: they are imputed too; one input is enough.
    assert logic.inputProblems(CONTRASTS, "t1gd", {"t1": nodes[0], "t2": None, "flair": None}, mostMissing=3) == []
    assert logic.inputProblems(CONTRASTS, "t1gd", {"t1": None, "t2": None, "flair": None}, mostMissing=3) == [
        "Select at least one input volume (T1, T2, FLAIR)"]
    parameters = logic.getParameterNode()
    logic.setDefaultParameters(parameters)
    assert parameters.GetParameter("Missing") == "t1gd" and parameters.GetParameter("Device") == "auto"


def test_impute_folder_writes_each_study_and_reports_bad_ones(module, tiny_model_path, tmp_path):
    studies = tmp_path / "studies"
    for index, name in enumerate(("case-a", "case-b")):
        for number, token in enumerate(("t1n", "t2w", "t2f")):  # one volume per contrast (the same voxels twice are refused)
            image = sitk.GetImageFromArray((np.random.default_rng([index, number]).random((6, 32, 32)) * 50 + 10).astype(np.float32))
            (studies / name).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(image, str(studies / name / f"{name}-{token}.nii.gz"))
    (studies / "case-b" / "case-b-t2w.nii.gz").unlink()
    progress = []
    report = module.CollaGANImputeLogic().imputeFolder(str(studies), str(tmp_path / "out"), "t1gd",
                                                       weights=str(tiny_model_path), progress=lambda *a: progress.append(a))
    assert report["case-a"] == tmp_path / "out" / "case-a_t1gd_collagan.nii.gz" and report["case-a"].is_file()
    assert "T2" in report["case-b"] and report["case-b"].startswith("skipped")
    assert progress[-1] == (2, 2, "done")
    assert not list((tmp_path / "out").glob("*.partial*"))


@pytest.mark.slow
def test_train_runs_the_engine_command_and_yields_a_loadable_model(module, tmp_path):
    data = tmp_path / "data"
    for index in range(2):
        for key in CONTRASTS:
            # each contrast its own voxels: one volume given for two contrasts is refused
            seed = 10 * index + CONTRASTS.index(key)
            image = sitk.GetImageFromArray((np.random.default_rng(seed).random((4, 32, 32)) * 50 + 10).astype(np.float32))
            (data / f"s{index}").mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(image, str(data / f"s{index}" / f"s{index}_{key}.nii.gz"))
    progress = []
    weights = module.CollaGANImputeLogic().train(
        str(data), str(tmp_path / "run"), steps=2, name="tiny", device="cpu", progress=lambda *a: progress.append(a),
        extraArgs=("--branch-width", 4, "--decoder-width", 8, "--depth", 2, "--validation", "s1"))
    assert weights == tmp_path / "run" / "tiny.safetensors"
    assert progress and progress[-1][1] == 2  # (step, steps, stage) parsed from the command's progress lines
    assert load_model(weights).contrasts == CONTRASTS


def test_engine_command_job_progress_cancel_and_success(module, tiny_model_path, tmp_path):
    """The background-process plumbing: progress parsed from the engine's JSON lines, cancel, then a real command."""
    from CollaGANImputeLib.core.jobs import CommandJob

    script = ("import time\nfrom CollaGANImputeLib.core.progress import ProgressReporter\nreporter = ProgressReporter('training', 1000, lines=True)\n"
              "for i in range(1000):\n    reporter.update(i, 1000)\n    time.sleep(0.01)\n")
    job = CommandJob([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO / "CollaGANImpute")}).start()
    deadline = time.monotonic() + 30
    while job.state().done < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.state().total == 1000
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait()
    info = module.CollaGANImputeLogic().commandJob(["info", str(tiny_model_path)], stage="info").start()
    info.wait()
    assert any('"untrained test model"' in line for line in info.log)


def test_train_reports_the_engines_error(module, tmp_path):
    with pytest.raises(InputError, match="neither a manifest file nor a folder"):
        module.CollaGANImputeLogic().train(str(tmp_path / "absent"), str(tmp_path / "run"), steps=1)
    job = module.CollaGANImputeLogic().train(str(tmp_path / "absent"), str(tmp_path / "run"), resume=True, wait=False)
    assert "--resume" in job.args and "--steps" not in job.args  # a resumed run keeps its own step target
    with pytest.raises(InputError, match="no checkpoint"):
        job.wait()


def test_comparison_layout_and_the_model_card_text(module, scene, tiny_model_path):
    """Slicer's own layout logic turns the layout XML into one slice view per volume, in one view group; an
    input row left empty gets no view."""
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    labels = (["T1", "T2", "FLAIR"], ["Imputed", "Real", "|Difference|"])
    nodes = [synthetic_node(scene, name, seed) for seed, name in enumerate(labels[0] + labels[1])]
    layout_id, xml, shown = describe.comparison_layout({"t1": nodes[0], "t1gd": None, "t2": nodes[1], "flair": nodes[2]}, *nodes[3:],
                                                       orientation="Coronal")
    assert layout_id == 40433 and shown == nodes
    layout_node = layout_logic.GetLayoutNode()
    layout_node.AddLayoutDescription(layout_id, xml)
    layout_node.SetViewArrangement(layout_id)
    views = [scene.GetSingletonNode(f"CollaGANView{i}", "vtkMRMLSliceNode") for i in range(6)]
    assert all(views), "a comparison view was not created"
    assert [v.GetLayoutLabel() for v in views] == labels[0] + labels[1]
    assert {(v.GetOrientation(), v.GetViewGroup()) for v in views} == {("Coronal", 7)}
    text = describe.card_html(module.CollaGANImputeLogic.modelCard(str(tiny_model_path)))
    assert "T1, T1Gd, T2, FLAIR" in text and "untrained test model" in text
    bundled = describe.card_html(module.CollaGANImputeLogic.modelCard())  # held-out scores preferred to validation ones
    held_out = module.CollaGANImputeLogic.modelCard()["metrics"]["held_out"]
    assert f"Held out ({', '.join(held_out['subjects'])})" in bundled
    assert f"<td>T1Gd</td><td>{held_out['t1gd']['ssim_brain']:.3f}</td>" in bundled
    axial = module.CollaGANImputeLogic.modelCard()["metrics"]["held_out_axial"]  # quality.py --axial --write-card
    assert "<b>Held out, Three slice orientations unticked (axial only)</b>" in bundled and "axial only" not in text
    assert f"<td>T2</td><td>{axial['t2']['ssim_brain']:.3f}</td>" in bundled.split("axial only")[1]
    ranks = module.CollaGANImputeLogic.modelCard()["reliability_held_out"]["calibrated"]["spearman_brain"]
    assert "<b>Reliability map, calibrated:</b> " + ", ".join(f"{module.display_name(k)} {rho:.2f}" for k, rho in ranks.items()) in bundled
    moved = module.CollaGANImputeLogic.modelCard()["intensity_landmarks"]["offsets"]
    assert "<b>Landmark offsets:</b> " + ", ".join(module.display_name(k) for k in moved) + " imputations get the bright tail" in bundled
    assert sorted(moved) == ["t1gd", "t2"]  # benchmarks/results/intensity_mapping_gpu.md
    companion = module.CollaGANImputeLogic.modelCard()["companion"]
    assert f"<b>Companion:</b> T1, T2, FLAIR, when that contrast alone is missing, are imputed by {companion['weights_file']}" in bundled
    assert "Reliability map" not in text and "Landmark offsets" not in text and "Companion" not in text  # nothing of the kind in the test model


def test_importance_analysis_of_a_loaded_study(module, scene, cropped, tiny_model_path, tmp_path):
    files = cropped["BraTS-GLI-00001-000"]
    nodes = {key: load_node(scene, path, f"case-{key}") for key, path in files.items()}
    logic = module.CollaGANImputeLogic()
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="select a volume for FLAIR"):
        logic.analyseImportance({**nodes, "flair": None}, weights=str(tiny_model_path))
    report = logic.analyseImportance(nodes, segmenter="threshold", weights=str(tiny_model_path), reportFolder=str(tmp_path / "report"))
    assert sorted(report.ranking) == sorted(CONTRASTS) and len(report.table()) == 1 + len(CONTRASTS)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["importance.csv", "importance.json", "importance.md", "importance.png"]
    assert scene.GetNumberOfNodes() == count  # the analysis adds nothing to the scene


def test_reading_sessions_are_built_with_the_imputation_modules_model(module, reading_module, tiny_model_path):
    """The Reading Session module builds a session with the model chosen in CollaGAN Impute, and offers its contrasts."""
    node = module.CollaGANImputeLogic().getParameterNode()
    node.SetParameter("ModelPath", str(tiny_model_path))
    try:
        path, contrasts = reading_module.ReadingSessionLogic.modelChoice()
    finally:
        node.SetParameter("ModelPath", "")
    assert path == str(tiny_model_path) and contrasts == CONTRASTS
    command = reading_module.ReadingSessionLogic.createCommand("studies", "t1gd", 20, "session", path)
    assert command == ["reading-session", "create", "--studies", "studies", "--contrast", "t1gd", "--per-class", "20",
                       "--out", "session", "--progress", "lines", "--weights", str(tiny_model_path)]
    assert "--weights" not in reading_module.ReadingSessionLogic.createCommand("studies", "t1gd", 20, "session")
