"""A model's companion for one missing contrast: loaded with it and checked alike, handed exactly the requests it
serves (that contrast alone absent) by the library, the evaluation, the importance analysis and the command line,
and refused when its card or file does not fit."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects
from CollaGANImputeLib.analysis.importance import analyse_study
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import ModelError
from CollaGANImputeLib.inference.imputation import impute, impute_all
from CollaGANImputeLib.inference.synthesis import ServedInputs, model_inputs, network_stack, synthesise
from CollaGANImputeLib.io.geometry import to_canonical_array
from CollaGANImputeLib.model.model_card import card_path_for
from CollaGANImputeLib.model.networks import Generator, GeneratorConfig
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS, cropped_manifest

SERVED = ["t2", "flair"]


def _pair(folder, tiny_any_model_path):
    """An any-subset model whose card names a companion (another generator, trained in the metrics' intensity
    space, so it reads its inputs differently) for T2 and FLAIR."""
    torch.manual_seed(1)
    companion = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3))
    save_model(companion, CONTRASTS, folder / "one_missing.safetensors", {"description": "untrained companion"}, brasyn_scaled=True)
    return save_model(load_model(tiny_any_model_path).generator, CONTRASTS, folder / "any.safetensors",
                      {"description": "untrained test model", "missing_inputs": {"min": 1, "max": 3},
                       "companion": {"weights_file": "one_missing.safetensors", "contrasts": SERVED}})


@pytest.fixture(scope="module")
def pair_path(tiny_any_model_path, tmp_path_factory):
    return _pair(tmp_path_factory.mktemp("pair"), tiny_any_model_path)


@pytest.fixture(scope="module")
def pair(pair_path):
    return load_model(pair_path)


def _network(model, files, key):
    """What `model`'s own generator makes of `key` from the other contrasts of `files`."""
    study = prepare_study({k: files[k] for k in CONTRASTS if k != key}, CONTRASTS)
    return synthesise(model.generator, model_inputs(model, study), CONTRASTS.index(key), study.mask)


def test_the_companion_is_loaded_and_serves_only_its_request(pair):
    assert pair.companion is not None and pair.companion.brasyn_scaled and not pair.brasyn_scaled
    others = lambda key: [k for k in CONTRASTS if k != key]  # noqa: E731
    for key in CONTRASTS:
        assert pair.serving([key], others(key)) is (pair.companion if key in SERVED else pair)
    assert pair.serving(["flair"], ["t1", "t2"]) is pair  # T1Gd absent too: two missing, the any-subset model's request
    assert pair.serving(["t2", "flair"], ["t1", "t1gd"]) is pair
    assert pair.companion.serving(["flair"], others("flair")) is pair.companion  # a companion names none of its own


def test_each_serving_model_reads_the_study_in_its_own_space_made_once(tumour_crop, pair):
    study = prepare_study({k: tumour_crop[k] for k in CONTRASTS if k != "flair"}, CONTRASTS)
    inputs = ServedInputs(study)
    plain, scaled = inputs(pair), inputs(pair.companion)
    assert inputs(pair) is plain and inputs(pair.companion) is scaled  # made once per model
    np.testing.assert_array_equal(plain, network_stack(study, CONTRASTS))  # brain SDs, as the study holds them
    np.testing.assert_array_equal(scaled, model_inputs(pair.companion, study))  # the companion's [0, 1]
    assert scaled.max() == pytest.approx(1.0) and plain.max() > 2.0 and not scaled[CONTRASTS.index("flair")].any()


def test_impute_hands_the_served_request_to_the_companion(tumour_crop, pair):
    given = {k: tumour_crop[k] for k in CONTRASTS if k != "flair"}
    result = impute(given, "flair", pair)
    volume = to_canonical_array(result.image)
    np.testing.assert_allclose(volume, _network(pair.companion, tumour_crop, "flair"), atol=1e-5)
    assert not np.allclose(volume, _network(pair, tumour_crop, "flair"), atol=1e-3)  # the two networks differ
    assert any("companion" in note and "one_missing" in note for note in result.notes)
    # T1 is not served: the any-subset model imputes it, with no note about a companion.
    other = impute({k: tumour_crop[k] for k in CONTRASTS if k != "t1"}, "t1", pair)
    np.testing.assert_allclose(to_canonical_array(other.image), _network(pair, tumour_crop, "t1"), atol=1e-5)
    assert not any("companion" in note for note in other.notes)


def test_two_missing_and_reliability_requests_stay_with_the_any_subset_model(tumour_crop, pair):
    results = impute_all({"t1": tumour_crop["t1"], "t1gd": tumour_crop["t1gd"]}, ["t2", "flair"], pair)
    study = prepare_study({"t1": tumour_crop["t1"], "t1gd": tumour_crop["t1gd"]}, CONTRASTS)
    stack = model_inputs(pair, study)
    for key in ("t2", "flair"):
        np.testing.assert_allclose(to_canonical_array(results[key].image), synthesise(pair.generator, stack, CONTRASTS.index(key), study.mask),
                                   atol=1e-5)
    # The reliability map is the any-subset model's error model, so the imputation beside it is that model's too.
    mapped = impute({k: tumour_crop[k] for k in CONTRASTS if k != "t2"}, "t2", pair, uncertainty=True)
    np.testing.assert_allclose(to_canonical_array(mapped.image), _network(pair, tumour_crop, "t2"), atol=1e-5)
    assert mapped.uncertainty is not None


def test_evaluation_scores_each_contrast_by_the_model_that_serves_it(manifest, pair, tmp_path):
    data = cropped_manifest(manifest, ["TCGA-DU-7294"], tmp_path)
    subjects = only_subjects(discover_subjects(data, CONTRASTS), ["TCGA-DU-7294"], data)
    report = evaluate_subjects(pair, subjects, ["t1", "flair"])
    by = {row["contrast"]: row["by"] for row in report["results"]}
    assert by == {"t1": "any", "flair": "one_missing"}
    alone = evaluate_subjects(load_model(pair.companion.weights_path), subjects, ["flair"])
    assert report["mean"]["flair"] == pytest.approx(alone["mean"]["flair"], abs=1e-6)


def test_importance_scores_each_contrast_by_the_model_that_serves_it(tumour_crop, pair):
    report = analyse_study(tumour_crop, pair)
    by = {row["contrast"]: row["by"] for row in report.rows}
    assert by == {"t1": "any", "t1gd": "any", "t2": "one_missing", "flair": "one_missing"}
    assert any(note.startswith("T2, FLAIR imputed by 'one_missing'") for note in report.notes)
    alone = {row["contrast"]: row for row in analyse_study(tumour_crop, load_model(pair.companion.weights_path)).rows}
    served = {row["contrast"]: row for row in report.rows}
    assert served["flair"]["ssim_brain"] == pytest.approx(alone["flair"]["ssim_brain"], abs=1e-6)
    assert served["t1"]["ssim_brain"] != pytest.approx(alone["t1"]["ssim_brain"], abs=1e-6)  # T1 stays with the any-subset model


def test_the_command_line_uses_the_companion(tumour_crop, pair_path, tmp_path):
    out = tmp_path / "flair.nii.gz"
    args = ["impute", "--weights", str(pair_path), "--missing", "flair", "-o", str(out)]
    for key in CONTRASTS:
        if key != "flair":
            args += [f"--{key}", str(tumour_crop[key])]
    assert main(args) == 0
    written = to_canonical_array(sitk.ReadImage(str(out)))
    np.testing.assert_allclose(written, _network(load_model(pair_path).companion, tumour_crop, "flair"), atol=1e-4)


@pytest.mark.parametrize("companion, problem", [
    ({"weights_file": "../elsewhere.safetensors", "contrasts": ["flair"]}, "companion.weights_file"),
    ({"weights_file": "one_missing.safetensors", "contrasts": ["pd"]}, "companion.contrasts"),
    ({"weights_file": "one_missing.safetensors", "contrasts": []}, "companion.contrasts"),
    ("one_missing.safetensors", "companion"),
])
def test_a_bad_companion_field_is_refused_naming_it(pair_path, tmp_path, companion, problem):
    folder = tmp_path / "bad"
    shutil.copytree(pair_path.parent, folder)
    card = json.loads(card_path_for(folder / pair_path.name).read_text())
    card["companion"] = companion
    card_path_for(folder / pair_path.name).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=problem):
        load_model(folder / pair_path.name)


def test_a_companion_that_does_not_fit_is_refused(pair_path, tmp_path):
    folder = tmp_path / "swapped"
    shutil.copytree(pair_path.parent, folder)
    # A companion whose weights were changed after its card was written: refused like any model.
    weights = folder / "one_missing.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="one_missing.safetensors.*does not match its model card"):
        load_model(folder / pair_path.name)
    # A companion taking the contrasts in another order would read the stack wrongly.
    torch.manual_seed(2)
    save_model(Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3)), CONTRASTS[::-1], weights,
               {"description": "contrasts reversed"})
    with pytest.raises(ModelError, match="same contrasts in the same order"):
        load_model(folder / pair_path.name)


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_the_bundled_pair_is_the_pair_the_rules_judged_and_fits_the_size_limit():
    """The bundled pair is the weights of session 30's runs on 160x160 windows in bf16 (benchmarks/results/
    any_subset_crop160, companion_crop160), each started from session 29's model of its kind (any_subset_three_planes,
    companion_three_planes). Their sha256 as the runs recorded them: 40 MB together at most, the companion serving T1, T2 and FLAIR with the
    other three given, never T1Gd, and the landmark mapping that of the GPU model they descend from (the rules kept
    it). The companion was judged without a mapping: its lines only undo its own scaling, which changes no figure."""
    def card(path: str) -> dict:
        return json.loads((RESULTS / path).read_text())

    model = load_model()
    lineage = ((model, "any_subset_crop160/phase2/card.json", "any_subset_three_planes/collagan_brats.json"),
               (model.companion, "companion_crop160/phase2/card.json", "companion_three_planes/phase2/card.json"))
    for bundled, run, before in lineage:
        assert bundled.card["sha256"] == card(run)["sha256"] and bundled.card["training"]["config"]["planes"] == 3
        started = bundled.card["training"]["initialised_from"]["initialised_from"]["weights"]["sha256"]  # phase 1's init
        assert started == card(before)["sha256"]
        assert bundled.card["training"]["config"]["crop"] == 160 and bundled.card["training"]["config"]["bf16"]
    assert model.most_missing == 3 and model.companion.most_missing == 1 and model.companion.brasyn_scaled
    assert model.weights_path.stat().st_size + model.companion.weights_path.stat().st_size <= 40e6
    served = {key for key in CONTRASTS if model.serving([key], [k for k in CONTRASTS if k != key]) is model.companion}
    assert served == {"t1", "t2", "flair"}
    gpu_card = json.loads((RESULTS / "gpu_run_wide" / "collagan_brats.json").read_text())
    kept = {k: v for k, v in model.card["intensity_landmarks"].items() if k not in ("fitted_for_sha256", "kept_by")}
    assert kept == gpu_card["intensity_landmarks"] and model.card["intensity_landmarks"]["fitted_for_sha256"] == gpu_card["sha256"]
    assert model.companion.card["intensity_landmarks"]["levels"] == [0.5, 99.5]  # only the way back to brain SDs (test_brasyn_scale.py)


def test_the_three_orientation_decisions_follow_their_rules_on_the_recorded_figures():
    """docs/validation_rule.md (session 29) applied to the stored evaluations by the default path: the companion
    trained on three orientations beats session 28's figures of the companion before it on T1, T2 and FLAIR (mean brain
    SSIM, none lower by more than 0.01) and its continuation does not beat it, so it was not carried; the any-subset
    model trained on three orientations beats the bundled one, both alone, on the four contrasts' mean with none lower
    by more than 0.01."""
    def means(path: str, contrasts: tuple = ("t1", "t2", "flair")) -> dict:
        report = json.loads((RESULTS / path).read_text())
        assert report["planes"] == 3
        return {k: report["mean"][k]["ssim_brain"] for k in contrasts}

    before, carried = means("default_planes/evaluate_planes3_bf16.json"), means("companion_three_planes/evaluate_planes3_bf16.json")
    continued = means("companion_three_planes_continued/evaluate_planes3_bf16.json")
    assert np.mean(list(carried.values())) > np.mean(list(before.values())) and all(carried[k] >= before[k] - 0.01 for k in carried)
    assert np.mean(list(continued.values())) < np.mean(list(carried.values()))
    any_before = means("any_subset_three_planes/evaluate_bundled_planes3_bf16.json", CONTRASTS)
    any_carried = means("any_subset_three_planes/evaluate_candidate_planes3_bf16.json", CONTRASTS)
    assert np.mean(list(any_carried.values())) > np.mean(list(any_before.values()))
    assert all(any_carried[k] >= any_before[k] - 0.01 for k in CONTRASTS)


def test_the_crop_decisions_follow_their_rules_on_the_recorded_figures():
    """docs/validation_rule.md's two rules for 160x160 windows (session 30), applied to their decision runs by the
    default path, bundled and candidate in the same run: the companion's mean brain SSIM over T1, T2 and FLAIR, and
    the any-subset model's alone over the four contrasts with the bundled landmark mapping, are higher, none lower by
    more than 0.01. The bundled models' figures there are session 29's decision runs' (the engine gave them again),
    and the card's figures are the candidates' (T1Gd the any-subset model's, the rest the companion's)."""
    def decision(folder: str) -> tuple[dict, dict, dict]:
        report = json.loads((RESULTS / folder / "evaluate.json").read_text())
        assert all(m["planes"] == 3 for m in report["models"].values())
        bundled, carried = ({k: v["ssim_brain"] for k, v in report["models"][label]["as acquired"].items()} for label in ("bundled", "crop160"))
        assert np.mean(list(carried.values())) > np.mean(list(bundled.values())) and all(carried[k] >= bundled[k] - 0.01 for k in carried)
        return report, bundled, carried

    companion, companion_before, companion_carried = decision("companion_crop160")
    any_subset, any_before, any_carried = decision("any_subset_crop160")
    assert companion["contrasts"] == ["t1", "t2", "flair"] and any_subset["contrasts"] == CONTRASTS
    assert all(m["alone"] and m["landmarks_from"] == "bundled" for m in any_subset["models"].values())
    for before, path in ((companion_before, "companion_three_planes/evaluate_planes3_bf16.json"),
                         (any_before, "any_subset_three_planes/evaluate_candidate_planes3_bf16.json")):
        recorded = json.loads((RESULTS / path).read_text())["mean"]
        assert all(abs(before[k] - recorded[k]["ssim_brain"]) < 5e-4 for k in before)
    model = load_model()
    assert companion["models"]["crop160"]["sha256"] == model.companion.card["sha256"]
    assert any_subset["models"]["crop160"]["sha256"] == model.card["sha256"]
    card = model.card["metrics"]["held_out"]
    assert all(abs(card[k]["ssim_brain"] - companion_carried[k]) < 5e-4 for k in companion_carried)
    assert abs(card["t1gd"]["ssim_brain"] - any_carried["t1gd"]) < 5e-4


def test_the_recorded_decisions_follow_their_rules_on_the_recorded_figures():
    """docs/training.md's rules (commit 63403fa) applied to the stored evaluations: the continued model's mean brain
    SSIM over four contrasts beats the bundled card's with none lower by more than 0.01, and the companion's mean over
    T1, T2 and FLAIR beats the continued model's, likewise."""
    bundled = {k: v["CollaGAN"]["ssim_brain"] for k, v in json.loads((RESULTS / "gpu_run_wide" / "quality.json").read_text())["mean"].items()}
    folder = RESULTS / "cpu_continued"
    continued = {k: v["ssim_brain"] for k, v in json.loads((folder / "evaluation_continued.json").read_text())["mean"].items()}
    companion = {k: v["ssim_brain"] for k, v in json.loads((folder / "evaluation_companion.json").read_text())["mean"].items()}
    assert sorted(continued) == sorted(CONTRASTS) and sorted(companion) == ["flair", "t1", "t2"]
    assert np.mean([continued[k] for k in CONTRASTS]) > np.mean([bundled[k] for k in CONTRASTS])
    assert all(continued[k] >= bundled[k] - 0.01 for k in CONTRASTS)
    assert np.mean([companion[k] for k in companion]) > np.mean([continued[k] for k in companion])
    assert all(companion[k] >= continued[k] - 0.01 for k in companion)
