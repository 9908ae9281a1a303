"""The calibrated reliability map: the error model's fit and features, calibration on real (cropped)
subjects, the card it is stored in, the command, and on the held-out subject that it ranks the error of
the bundled model better than the spread it builds on."""

import json

import numpy as np
import pytest
from CollaGANImputeLib.cli.calibrate import cmd_calibrate
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.core.metrics import brasyn_normalise
from CollaGANImputeLib.inference import error_model
from CollaGANImputeLib.inference.imputation import impute_all
from CollaGANImputeLib.inference.reliability import available_methods, calibrate, describe, reliability_map, uncertainty_map
from CollaGANImputeLib.inference.synthesis import network_stack
from CollaGANImputeLib.model.model_card import WEAK_RANKING, held_out_caveat, read_card, update_card
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS, REPO, crop_volumes, cropped_manifest, subject_files
from scipy.stats import spearmanr

T2 = 2
ANY_SUBSET = {"contrasts": CONTRASTS, "missing_inputs": {"min": 1, "max": 3}}


@pytest.fixture(scope="module")
def shared_crops(manifest, tmp_path_factory):
    """Two shared subjects cut to a block, with a manifest listing them."""
    return cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path_factory.mktemp("calibration"))  # LPS, RAS


@pytest.fixture()
def any_model_copy(tiny_any_model_path, tmp_path):
    """A writable copy of the tiny any-subset model (calibration writes into its card)."""
    return save_model(load_model(tiny_any_model_path).generator, CONTRASTS, tmp_path / "model.safetensors",
                      {"description": "untrained test model", "missing_inputs": {"min": 1, "max": 3},
                       "training": {"train_subjects": ["TCGA-DU-7294", "AURORA-MET-example"]}})


def test_features_are_brain_ranks_and_the_fit_recovers_a_known_model():
    rng = np.random.default_rng(1)
    mask = np.zeros((3, 20, 24), dtype=bool)
    mask[:, 3:17, 4:20] = True
    central, spread = rng.random(mask.shape).astype(np.float32), rng.random(mask.shape).astype(np.float32) * 5
    matrix = error_model.feature_matrix(central, spread, mask)
    assert matrix.shape == (mask.sum(), 1 + len(error_model.FEATURES))
    assert np.all(matrix[:, 0] == 1) and matrix[:, 1:].min() > 0 and matrix[:, 1:].max() == 1
    # Ranks do not care about the scale: the same features for a spread 1000 times larger.
    assert np.array_equal(matrix, error_model.feature_matrix(central, spread * 1000, mask))
    truth = [0.05, 0.3, 0.1, -0.02]
    coefficients = error_model.fit([matrix], [matrix @ np.array(truth)])
    assert coefficients == pytest.approx(truth, abs=1e-9)
    expected = error_model.expected_error(coefficients, central, spread, mask)
    assert expected.shape == mask.shape and expected.dtype == np.float32
    assert np.all(expected[~mask] == 0) and expected[mask] == pytest.approx(matrix @ np.array(truth), abs=1e-6)
    assert error_model.expected_error([-1.0, 0, 0, 0], central, spread, mask).max() == 0  # never negative
    with pytest.raises(ModelError, match="needs 4 coefficients"):
        error_model.expected_error([0.1, 0.2], central, spread, mask)


def test_the_card_decides_which_methods_are_offered():
    calibrated = {**ANY_SUBSET, "error_model": {"spread": "subsets"}}
    assert available_methods(calibrated) == ("calibrated", "subsets", "flips")
    assert available_methods(calibrated, present=1) == ("flips",)  # nothing to drop: no subsets spread, no error model on it
    assert available_methods(ANY_SUBSET) == ("subsets", "flips")
    one_missing = {"contrasts": CONTRASTS, "error_model": {"spread": "flips"}}
    assert available_methods(one_missing) == available_methods(one_missing, present=1) == ("calibrated", "flips")
    with pytest.raises(ModelError, match="no error model for t2; run collagan-impute calibrate"):
        error_model.coefficients_for({"name": "m", **ANY_SUBSET}, "t2")
    stale = {"error_model": {"features": ["spread"], "window": 5, "coefficients": {"t2": [0, 1]}}}
    with pytest.raises(ModelError, match="other features"):
        error_model.coefficients_for(stale, "t2")
    assert "expected |error|" in describe("calibrated") and "input subsets" in describe("subsets")


def test_calibration_on_real_subjects_and_the_calibrated_map(shared_crops, any_model_copy):
    model = load_model(any_model_copy)
    studies = {s.name: prepare_subject(s, CONTRASTS) for s in discover_subjects(shared_crops, CONTRASTS)}
    seen = []
    block = calibrate(model, studies, every=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (8, 8)
    assert block["spread"] == "subsets" and block["features"] == list(error_model.FEATURES)
    assert block["fitted_on"] == ["TCGA-DU-7294", "AURORA-MET-example"] and block["slices"] == "every 2 axial brain slice(s)"
    assert set(block["coefficients"]) == set(CONTRASTS) and all(len(c) == 4 for c in block["coefficients"].values())
    assert all(-1 <= rho <= 1 for rho in block["spearman_on_fitted_subjects"].values())

    update_card(any_model_copy, {"error_model": block})
    model = load_model(any_model_copy)  # the weights' sha256 still matches the card
    assert available_methods(model.card)[0] == "calibrated"
    study = studies["TCGA-DU-7294"]
    stack, mask = network_stack(study, CONTRASTS), study.mask
    central, expected = reliability_map(model, stack, T2, mask)
    plain, spread = uncertainty_map(model.generator, stack, T2, mask, method="subsets")
    assert np.array_equal(central, plain)
    assert np.array_equal(expected, error_model.expected_error(block["coefficients"]["t2"], central, spread, mask))
    assert np.all(expected[~mask] == 0) and expected.min() >= 0
    with pytest.raises(InputError, match="cannot give a 'calibrated' reliability map for 1 present input"):
        reliability_map(model, stack, T2, mask, method="calibrated", present=[0])


WEAK_T2 = {"calibrated": {"subjects": ["BraTS-GLI-00001-000"], "source": "test", "spearman_brain": {"t1": 0.5, "t2": 0.12}}}


def test_impute_all_uses_the_calibrated_map_and_says_what_it_means(shared_crops, any_model_copy):
    model = load_model(any_model_copy)
    studies = {s.name: prepare_subject(s, CONTRASTS) for s in discover_subjects(shared_crops, CONTRASTS)}
    update_card(any_model_copy, {"error_model": calibrate(model, studies, every=3), "reliability_held_out": WEAK_T2})
    model = load_model(any_model_copy)
    inputs = {k: shared_crops / "TCGA-DU-7294" / f"{k}.nii.gz" for k in ("t1", "t1gd", "flair")}
    result = impute_all(inputs, ["t2"], model, uncertainty=True)["t2"]
    assert result.uncertainty_meaning == error_model.UNIT
    assert result.uncertainty.GetSize() == result.image.GetSize() and result.uncertainty.GetOrigin() == result.image.GetOrigin()
    weak = [n for n in result.notes if "ranked the actual error weakly" in n]
    assert len(weak) == 1 and "calibrated reliability map of T2" in weak[0] and "Spearman 0.12" in weak[0]
    two = impute_all({k: inputs[k] for k in ("t1", "t1gd")}, ["t2"], model, uncertainty=True)["t2"]
    assert two.uncertainty_meaning == error_model.UNIT  # two inputs: one can still be dropped
    one = impute_all({"t1": inputs["t1"]}, ["t2"], model, uncertainty=True)["t2"]
    assert "flipped and shifted canvases" in one.uncertainty_meaning
    assert not any("weakly" in n for n in one.notes)  # nothing was measured for the flips map
    plain = impute_all(inputs, ["t2"], model)["t2"]
    assert not any("weakly" in n for n in plain.notes)


def test_held_out_caveat_only_where_the_card_measured_a_weak_map():
    card = {"reliability_held_out": WEAK_T2}
    assert held_out_caveat(card, "calibrated", "t2").startswith("the calibrated reliability map of T2 ranked the actual error weakly")
    assert held_out_caveat(card, "calibrated", "t1") is None  # 0.5 ranks the error
    assert held_out_caveat(card, "subsets", "t2") is None and held_out_caveat({}, "calibrated", "t2") is None
    at_bar = {"reliability_held_out": {"calibrated": {**WEAK_T2["calibrated"], "spearman_brain": {"t2": WEAK_RANKING}}}}
    assert held_out_caveat(at_bar, "calibrated", "t2") is None


def test_calibrate_command_writes_the_card_and_refuses_bad_requests(shared_crops, any_model_copy, capsys):
    subsets = {"subjects": ["BraTS-GLI-00001-000"], "source": "test", "spearman_brain": {"t2": 0.4}}
    update_card(any_model_copy, {"reliability_held_out": {**WEAK_T2, "subsets": subsets}})
    before = read_card(any_model_copy)
    assert cmd_calibrate(["--data", str(shared_crops / "manifest.json"), "--weights", str(any_model_copy), "--every", "4",
                          "--device", "cpu", "--progress", "lines"]) == 0
    card = read_card(any_model_copy)
    assert card["sha256"] == before["sha256"] and card["training"] == before["training"]
    assert card["error_model"]["fitted_on"] == ["TCGA-DU-7294", "AURORA-MET-example"]
    assert card["error_model"]["command"].startswith("collagan-impute calibrate --data")
    assert card["reliability_held_out"] == {"subsets": subsets}  # the old error model's held-out figures are gone
    printed = capsys.readouterr().out
    assert "T1Gd   Spearman(map, |error|) on the fitted subjects" in printed and "collagan-progress" in printed
    calibrated = read_card(any_model_copy)
    with pytest.raises(InputError, match="already holds an error model \\(fitted on TCGA-DU-7294, AURORA-MET-example\\); give --overwrite"):
        cmd_calibrate(["--data", str(shared_crops), "--weights", str(any_model_copy)])  # refused before any work
    assert read_card(any_model_copy) == calibrated
    with pytest.raises(InputError, match="subject\\(s\\) NOPE not in"):
        cmd_calibrate(["--data", str(shared_crops), "--weights", str(any_model_copy), "--subject", "NOPE", "--overwrite"])
    with pytest.raises(InputError, match="--every must be at least 1"):
        cmd_calibrate(["--data", str(shared_crops), "--weights", str(any_model_copy), "--every", "0", "--overwrite"])


def test_calibrate_needs_the_subjects_named_when_the_card_has_none_there(shared_crops, tiny_any_model_path):
    with pytest.raises(InputError, match="name the subjects to fit on with --subject"):
        cmd_calibrate(["--data", str(shared_crops), "--weights", str(tiny_any_model_path)])


def test_bundled_calibrated_map_ranks_held_out_error_better_than_its_spread(manifest):
    """The bundled model's error model was fitted on its three training subjects; on five slices of the
    held-out BraTS-GLI-00001-000 its map ranks |error| of the synthetic T2 better than the subsets spread
    alone (benchmarks/reliability.py: whole-volume figures for every contrast)."""
    model = load_model()
    assert "BraTS-GLI-00001-000" not in model.card["error_model"]["fitted_on"]
    prepared = prepare_study(subject_files(manifest, "BraTS-GLI-00001-000"), model.contrasts)
    chosen = [35, 55, 75, 95, 115]
    stack = np.ascontiguousarray(network_stack(prepared, model.contrasts)[:, chosen])
    mask = prepared.mask[chosen]
    central, spread = uncertainty_map(model.generator, stack, T2, mask, method="subsets")
    expected = error_model.expected_error(error_model.coefficients_for(model.card, "t2"), central, spread, mask)
    error = np.abs(brasyn_normalise(central, mask) - brasyn_normalise(stack[T2], mask))
    calibrated, spread_only = spearmanr(expected[mask], error[mask])[0], spearmanr(spread[mask], error[mask])[0]
    assert calibrated > 0.3 and calibrated > spread_only + 0.1


def test_bundled_card_records_the_held_out_reliability_benchmark_and_its_caveats():
    """The card's held-out figures are those of benchmarks/results/reliability.json (same weights) for every map
    measured there, and each map that ranked the held-out error weakly (Spearman under WEAK_RANKING) comes with
    a caveat for the user, and only those."""
    card = load_model().card
    results = REPO / "benchmarks" / "results"
    flips = results / "reliability_flips.json"  # the flips map is measured on its own run (about 40 imputations a contrast)
    reports = [json.loads(path.read_text()) for path in (results / "reliability.json", *([flips] if flips.is_file() else []))]
    measured = set()
    for report in reports:
        assert report["weights_sha256"] == card["sha256"]
        for row in report["results"]:
            recorded = card["reliability_held_out"][row["method"]]
            assert recorded["subjects"] == [report["held_out"]] and report["slices"] in recorded["source"]
            assert recorded["spearman_brain"][row["contrast"]] == pytest.approx(row["spearman_brain"], abs=5e-4)
            weak = recorded["spearman_brain"][row["contrast"]] < WEAK_RANKING
            assert (held_out_caveat(card, row["method"], row["contrast"]) is not None) == weak
            measured.add(row["method"])
    assert measured == set(card["reliability_held_out"]) and {"calibrated", "subsets"} <= measured


def test_an_imputation_from_one_input_gets_the_flips_map_and_a_caveat_where_one_is_recorded(sample_files, tmp_path):
    """From T2 alone only the flips spread can be had; where the card records a weak held-out figure for it, the
    user is told so beside the result, and only there (no caveat is made up)."""
    t2 = crop_volumes({"t2": sample_files["t2"]}, (slice(60, 124), slice(60, 124), slice(60, 72)), tmp_path)["t2"]
    model = load_model()
    result = impute_all({"t2": t2}, ["t1"], model, uncertainty=True)["t1"]
    assert result.uncertainty_meaning == describe("flips")
    figure = model.card["reliability_held_out"].get("flips", {}).get("spearman_brain", {}).get("t1")
    weak = figure is not None and figure < WEAK_RANKING
    assert any("flips reliability map of T1 ranked the actual error weakly" in note for note in result.notes) == weak
