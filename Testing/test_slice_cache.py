"""The slice cache: real slices survive the 8-bit round trip within its bound, a run asking for something else is
refused, nothing is unpickled, and `cache` then `train --data slices.npz --subject` trains on the subjects named."""

import json

import numpy as np
import pytest
import torch
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.model.model_card import BRASYN_UNIT, INTENSITY_UNIT
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import (
    Subject,
    build_slice_set,
    canvas_for,
    canvas_slices,
    oriented,
    prepare_subject,
)
from CollaGANImputeLib.preparation.slice_cache import (
    LEVELS,
    load_slice_cache,
    save_slice_cache,
)
from CollaGANImputeLib.preparation.study import brain_slices
from conftest import CONTRASTS, cropped_manifest, subject_files

SPACE = {"bias_correct": False, "brasyn_scale": False}


@pytest.fixture(scope="module")
def studies(manifest):
    """Two real subjects, the second without its FLAIR (an incomplete study, as training accepts)."""
    full = Subject("TCGA-DU-7294", subject_files(manifest, "TCGA-DU-7294"))
    files = subject_files(manifest, "AURORA-MET-example")
    del files["flair"]
    return {s.name: prepare_subject(s, CONTRASTS) for s in (full, Subject("AURORA-MET-example", files))}


@pytest.fixture(scope="module")
def slices(studies):
    return build_slice_set(studies, CONTRASTS, (160, 160), stride=4)


def test_round_trip_is_within_the_quantisation_bound(slices, tmp_path):
    path = save_slice_cache(tmp_path / "slices.npz", slices, CONTRASTS, {"canvas": [160, 160], "stride": 4, "source": "x", **SPACE})
    loaded, header = load_slice_cache(path, CONTRASTS, SPACE)
    assert header["canvas"] == [160, 160] and header["stride"] == 4 and header["source"] == "x"
    assert loaded.subjects == slices.subjects and np.array_equal(loaded.subject_index, slices.subject_index)
    assert torch.equal(loaded.masks, slices.masks) and torch.equal(loaded.present, slices.present)
    assert loaded.images.shape == slices.images.shape and loaded.images.dtype == torch.float32
    for number in range(2):
        chosen = torch.from_numpy(slices.subject_index == number)
        original, back = slices.images[chosen], loaded.images[chosen]
        for k in range(4):
            peak = float(original[:, k].max())
            assert float((back[:, k] - original[:, k]).abs().max()) <= peak / (2 * LEVELS) + 1e-6
    # The absent FLAIR stays absent: zeros, and never a target.
    assert not loaded.present[torch.from_numpy(loaded.subject_index == 1), 3].any()
    assert float(loaded.images[torch.from_numpy(loaded.subject_index == 1), 3].abs().max()) == 0.0
    assert path.stat().st_size < 0.6 * slices.images.numel()  # well under a byte a voxel


def test_a_cache_for_another_run_is_refused(slices, tmp_path):
    path = save_slice_cache(tmp_path / "slices.npz", slices, CONTRASTS, {"canvas": [160, 160], "stride": 4, "source": "x", **SPACE})
    with pytest.raises(InputError, match="slices.npz' holds t1, t1gd, t2, flair; this run trains t1, t2"):
        load_slice_cache(path, ["t1", "t2"], SPACE)
    with pytest.raises(InputError, match="made without --bias-correct; make one with it"):
        load_slice_cache(path, CONTRASTS, {**SPACE, "bias_correct": True})


def test_nothing_is_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, images=np.array([{"a": 1}], dtype=object), header=np.array("{}"))
    with pytest.raises(InputError, match="pickled.npz' cannot be read"):
        load_slice_cache(path, CONTRASTS, SPACE)
    other = tmp_path / "other.npz"
    np.savez(other, header=np.array(json.dumps({"format": "something else"})))
    with pytest.raises(InputError, match="other.npz' cannot be read: format 'something else'"):
        load_slice_cache(other, CONTRASTS, SPACE)


def test_split_by_subject_thins_validation_as_build_slice_set_does(studies, slices):
    every = build_slice_set(studies, CONTRASTS, (160, 160))
    train, validation = every.split(["AURORA-MET-example"], max_validation_slices=5)
    direct = build_slice_set({"AURORA-MET-example": studies["AURORA-MET-example"]}, CONTRASTS, (160, 160), max_slices_per_subject=5)
    assert train.subjects == ["TCGA-DU-7294"] and validation.subjects == ["AURORA-MET-example"]
    assert torch.equal(validation.images, direct.images) and torch.equal(validation.present, direct.present)
    assert len(train) == int((every.subject_index == 0).sum())
    with pytest.raises(InputError, match="both train and validate"):
        every.split(["AURORA-MET-example"], ["AURORA-MET-example"])
    with pytest.raises(InputError, match="none is left to train on"):
        every.split(["AURORA-MET-example", "TCGA-DU-7294"])
    with pytest.raises(InputError, match="nobody"):
        every.split(["nobody"])


def test_three_orientations_cut_each_subjects_axial_coronal_and_sagittal_slices(studies, tmp_path):
    """`planes` 3 gives the network the slices the default imputation asks it for: each subject's axial, then coronal,
    then sagittal brain slices, turned exactly as `synthesise` turns the study, on a canvas that holds every one."""
    one = {"TCGA-DU-7294": studies["TCGA-DU-7294"]}
    study = one["TCGA-DU-7294"]
    axial_canvas, canvas = canvas_for(one, 16), canvas_for(one, 16, planes=3)
    assert canvas[0] >= axial_canvas[0] and canvas[1] >= axial_canvas[1]
    three = build_slice_set(one, CONTRASTS, canvas, stride=5, planes=3)
    min_voxels = int(0.05 * canvas[0] * canvas[1])
    picked = [brain_slices(study.mask.transpose(order), min_voxels)[::5] for order in ((0, 1, 2), (1, 0, 2), (2, 0, 1))]
    assert len(three) == sum(map(len, picked)) and all(len(p) > 10 for p in picked)
    assert np.array_equal(three.subject_index, np.zeros(len(three), dtype=int)) and three.present.all()
    coronal = canvas_slices(oriented(study, (1, 0, 2)), CONTRASTS, canvas, picked[1][:3])
    assert np.array_equal(three.images[len(picked[0]) : len(picked[0]) + 3].numpy(), coronal)
    for cut, row in zip(coronal[:, 3], picked[1][:3]):  # the whole coronal slice of the FLAIR, nothing cut off
        assert np.isclose(cut.sum(), study.images["flair"][:, row].sum(), rtol=1e-5)
    row = int(picked[2][len(picked[2]) // 2])
    sagittal = three.images[len(picked[0]) + len(picked[1]) + len(picked[2]) // 2, 3].numpy()
    assert np.isclose(sagittal.sum(), study.images["flair"][:, :, row].sum(), rtol=1e-5)  # the whole sagittal slice, nothing cut off
    assert torch.equal(build_slice_set(one, CONTRASTS, canvas, stride=5).images, three.images[: len(picked[0])])  # axial first, as before
    with pytest.raises(InputError, match="planes: 2 asked"):
        build_slice_set(one, CONTRASTS, canvas, planes=2)


def test_cache_then_train_on_named_subjects(manifest, tmp_path, capsys):
    data = cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example", "TCGA-FG-6692"), tmp_path / "data",
                            (slice(88, 152), slice(88, 152), slice(70, 80)))
    cache = tmp_path / "slices.npz"
    assert main(["cache", "--data", str(data), "--out", str(cache), "--stride", "2", "--progress", "lines"]) == 0
    assert "wrote" in capsys.readouterr().out and cache.is_file()
    out = tmp_path / "run"
    argv = ["train", "--data", str(cache), "--out", str(out), "--steps", "2", "--validation", "AURORA-MET-example",
            "--subject", "TCGA-FG-6692", "--branch-width", "4", "--decoder-width", "8", "--depth", "2", "--name", "tiny",
            "--weights-dtype", "float16", "--progress", "lines"]
    assert main(argv) == 0
    training = load_model(out / "tiny.safetensors").card["training"]
    assert training["train_subjects"] == ["TCGA-FG-6692"] and training["validation_subjects"] == ["AURORA-MET-example"]
    assert training["slice_cache"] == {"file": str(cache), "stride": 2} and training["data"] == str(data)
    assert training["config"]["planes"] == 1  # the cache's own: axial slices
    assert training["config"]["subjects"] == ["TCGA-FG-6692"]
    # --resume keeps the subjects and the weights' dtype without naming them again.
    assert main(["train", "--data", str(cache), "--out", str(out), "--resume", "--steps", "3", "--name", "tiny"]) == 0
    resumed = load_model(out / "tiny.safetensors").card
    assert resumed["training"]["train_subjects"] == ["TCGA-FG-6692"] and resumed["dtype"] == "float16"  # as the run was set up
    capsys.readouterr()
    assert main(["cache", "--data", str(data), "--out", str(tmp_path / "slices.nii.gz")]) == 2
    assert "a slice cache is a .npz file" in capsys.readouterr().err
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "deep"), "--steps", "1", "--depth", "7"]) == 2
    assert "does not fit a generator of depth 7" in capsys.readouterr().err
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "planes"), "--steps", "1", "--context-slices", "1"]) == 2
    assert "holds single slices; a 2.5-D run (--context-slices) reads the studies" in capsys.readouterr().err
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "three"), "--steps", "1", "--planes", "3"]) == 2
    assert "holds slices of 1 orientation(s); this run trains on 3 (--planes): make a cache with --planes 3" in capsys.readouterr().err


def test_train_on_three_orientations_from_the_studies_or_a_cache_of_them(manifest, tmp_path, capsys):
    """`train --planes 3` cuts each study's axial, coronal and sagittal slices itself; a cache made with `--planes 3`
    gives the same slices and the run takes its orientations from it; either way the card and a resume keep them."""
    data = cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path / "data",
                            (slice(88, 152), slice(88, 152), slice(70, 86)))
    argv = ["--steps", "1", "--validation", "AURORA-MET-example", "--branch-width", "4", "--decoder-width", "8", "--depth", "2",
            "--name", "tiny", "--progress", "lines"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "studies"), "--planes", "3", *argv]) == 0
    cache = tmp_path / "three.npz"
    assert main(["cache", "--data", str(data), "--out", str(cache), "--planes", "3"]) == 0
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "cached"), *argv]) == 0
    cards = [load_model(tmp_path / run / "tiny.safetensors").card["training"] for run in ("studies", "cached")]
    study = prepare_subject(Subject("TCGA-DU-7294", {k: data / "TCGA-DU-7294" / f"{k}.nii.gz" for k in CONTRASTS}), CONTRASTS)
    axial = build_slice_set({"TCGA-DU-7294": study}, CONTRASTS, tuple(cards[0]["canvas"]))
    for training in cards:
        assert training["config"]["planes"] == 3 and training["canvas"] == cards[0]["canvas"]
        assert training["train_slices"] == cards[0]["train_slices"] > len(axial) + 50  # 16 axial, 64 coronal and 64 sagittal at most
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "cached"), "--resume", "--steps", "2", "--name", "tiny"]) == 0
    assert load_model(tmp_path / "cached" / "tiny.safetensors").card["training"]["config"]["planes"] == 3
    capsys.readouterr()
    assert main(["train", "--data", str(cache), "--out", str(tmp_path / "axial"), "--planes", "1", *argv]) == 2
    assert "holds slices of 3 orientation(s); this run trains on 1 (--planes)" in capsys.readouterr().err


def test_a_brasyn_scaled_cache_keeps_the_way_back_to_brain_sds(manifest, tmp_path, capsys):
    """A --brasyn-scale cache keeps each subject's brain percentiles in SDs before the scaling, so a model trained from it
    delivers brain SDs (card lines fitted on its training subjects alone); from a cache made before caches kept them, the
    model says its output is in [0, 1] and the run says how to add the way back."""
    data = cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path / "data",
                            (slice(88, 152), slice(88, 152), slice(70, 80)))
    cache = tmp_path / "scaled.npz"
    assert main(["cache", "--data", str(data), "--out", str(cache), "--stride", "3", "--brasyn-scale"]) == 0
    slices, header = load_slice_cache(cache, CONTRASTS, {**SPACE, "brasyn_scale": True})
    assert sorted(header["sd_percentiles"]) == ["AURORA-MET-example", "TCGA-DU-7294"]
    own = prepare_subject(Subject("TCGA-DU-7294", {k: data / "TCGA-DU-7294" / f"{k}.nii.gz" for k in CONTRASTS}), CONTRASTS)
    for key in CONTRASTS:
        expected = np.percentile(own.images[key][own.mask], [0.5, 99.5])
        np.testing.assert_allclose(header["sd_percentiles"]["TCGA-DU-7294"][key], expected, rtol=1e-6)
    assert float(slices.images.max()) <= 1.0 + 1e-6  # the slices themselves are in [0, 1]

    argv = ["train", "--steps", "1", "--validation", "AURORA-MET-example", "--brasyn-scale",
            "--branch-width", "4", "--decoder-width", "8", "--depth", "2", "--name", "tiny", "--progress", "lines"]
    assert main([*argv, "--data", str(cache), "--out", str(tmp_path / "run")]) == 0
    card = load_model(tmp_path / "run" / "tiny.safetensors").card
    lines = card["intensity_landmarks"]
    assert card["output_intensity"] == INTENSITY_UNIT and lines["fitted_on"] == ["TCGA-DU-7294"]  # never the validation subject
    low, high = np.array(header["sd_percentiles"]["TCGA-DU-7294"]["flair"])
    assert lines["offsets"]["flair"] == pytest.approx([low] * 2, abs=1e-4) and lines["slopes"]["flair"] == pytest.approx([high - low] * 2, abs=1e-4)

    older = save_slice_cache(tmp_path / "older.npz", slices, CONTRASTS, {k: v for k, v in header.items() if k not in ("format", "contrasts",
                                                                                                                    "sd_percentiles")})
    capsys.readouterr()
    assert main([*argv, "--data", str(older), "--out", str(tmp_path / "older_run")]) == 0
    card = load_model(tmp_path / "older_run" / "tiny.safetensors").card
    assert card["output_intensity"] == BRASYN_UNIT and "intensity_landmarks" not in card
    assert "normalisation_spread.py --write-card" in capsys.readouterr().err


def test_no_way_back_for_a_contrast_no_training_subject_has(capsys):
    """Fitted on the training subjects' percentiles only, and never guessed: a contrast none of them has leaves the
    card saying its output is in [0, 1], with a warning, instead of failing after the whole run."""
    from types import SimpleNamespace

    from CollaGANImputeLib.cli.train import _back_to_sd

    config = SimpleNamespace(contrasts=CONTRASTS)
    seen = {"a": {"t1": [0.1, 5.0], "t1gd": [0.2, 6.0], "t2": [0.3, 7.0]}, "b": {"t1": [0.3, 5.4], "t1gd": [0.0, 6.4], "t2": [0.1, 7.2]}}
    assert _back_to_sd(config, ["a", "b"], seen) == {}
    assert "no training subject has FLAIR" in capsys.readouterr().err
    seen["b"]["flair"] = [0.2, 6.0]
    fields = _back_to_sd(config, ["a", "b"], {**seen, "validation": {k: [9.0, 99.0] for k in CONTRASTS}})
    lines = fields["intensity_landmarks"]
    assert fields["output_intensity"] == INTENSITY_UNIT and lines["fitted_on"] == ["a", "b"]  # never the validation subject
    assert lines["offsets"]["t1"] == pytest.approx([0.2, 0.2]) and lines["slopes"]["t1"] == pytest.approx([5.0, 5.0])
    assert lines["offsets"]["flair"] == pytest.approx([0.2, 0.2]) and lines["slopes"]["flair"] == pytest.approx([5.8, 5.8])
