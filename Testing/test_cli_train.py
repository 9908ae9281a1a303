"""`collagan-impute train` and `evaluate` end to end: interrupted with Ctrl+C, resumed, exported, scored (on N4-corrected studies,
in the metrics' normalisation)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from CollaGANImputeLib.model.checkpoint import load_checkpoint
from CollaGANImputeLib.model.model_card import INTENSITY_UNIT
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.bias_field import corrected_study
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject
from conftest import CONTRASTS, REPO, cropped_manifest

TINY = ["--branch-width", "4", "--decoder-width", "8", "--depth", "3", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def small_data(manifest, tmp_path_factory):
    """Two real subjects cropped to 64x64x10 voxels around the brain centre, with a manifest."""
    return cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path_factory.mktemp("data"),
                            (slice(88, 152), slice(88, 152), slice(70, 80)))


def engine(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO / "CollaGANImpute")}
    return subprocess.Popen([sys.executable, "-m", "CollaGANImputeLib", *map(str, args)], env=env, encoding="utf-8",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_interrupted_training_resumes_and_exports(small_data, tmp_path):
    out = tmp_path / "run"
    process = engine("train", "--data", small_data, "--out", out, "--steps", 10000, "--validation", "AURORA-MET-example",
                     "--checkpoint-every", 1000, "--validate-every", 1000, "--progress", "lines", "--bias-correct", "--brasyn-scale", *TINY)
    for line in process.stdout:  # wait for a few steps, then press Ctrl+C
        if line.startswith("collagan-progress ") and json.loads(line.split(" ", 1)[1])["done"] >= 3:
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "continue with --resume" in err
    stopped_at = load_checkpoint(out / "checkpoint.safetensors")["step"]
    assert 3 <= stopped_at < 10000  # saved on cancel, not only at the periodic checkpoint
    assert not [p for p in out.iterdir() if "partial" in p.name]

    again = engine("train", "--data", small_data, "--out", out, "--steps", 2)
    assert again.wait(timeout=60) == 2 and "already holds a run" in again.stderr.read()

    resumed = engine("train", "--data", small_data, "--out", out, "--resume", "--steps", stopped_at + 2, "--name", "tiny")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    model = load_model(out / "tiny.safetensors")
    training = model.card["training"]
    assert training["steps"] == stopped_at + 2
    assert len(training["commands"]) == 2 and "--resume" in training["commands"][1]
    assert training["train_subjects"] == ["TCGA-DU-7294"] and training["validation_subjects"] == ["AURORA-MET-example"]
    assert set(model.card["metrics"]["validation"]) == {"step", *CONTRASTS}
    assert training["config"]["bias_correct"] and model.bias_corrected  # kept through --resume; its inputs get N4 too
    assert training["config"]["brasyn_scale"] and model.brasyn_scaled  # and are put in the metrics' normalisation
    # Its [0, 1] output comes back to brain SDs, like every other model's, by lines fitted on the training subject alone:
    # the 0.5th and 99.5th brain percentiles of its corrected study before the scaling.
    lines = model.card["intensity_landmarks"]
    assert model.card["output_intensity"] == INTENSITY_UNIT and lines["fitted_on"] == ["TCGA-DU-7294"] and lines["levels"] == [0.5, 99.5]
    subject, = only_subjects(discover_subjects(small_data, CONTRASTS), ["TCGA-DU-7294"], small_data)
    study = corrected_study(prepare_subject(subject, CONTRASTS))
    for key in CONTRASTS:
        low, high = np.percentile(study.images[key][study.mask], [0.5, 99.5])
        assert lines["offsets"][key] == pytest.approx([low, low], abs=2e-4), key
        assert lines["slopes"][key] == pytest.approx([high - low] * 2, abs=2e-4) and high - low > 2.0, key
    again = engine("train", "--data", small_data, "--out", out, "--resume", "--name", "tiny")  # no --steps: the run's own target
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert load_model(out / "tiny.safetensors").card["training"]["steps"] == stopped_at + 2

    report_path = tmp_path / "eval.json"
    evaluation = engine("evaluate", "--data", small_data, "--weights", out / "tiny.safetensors", "--json", report_path,
                        "--subject", "AURORA-MET-example", "--missing", "flair", "--bias-corrected")
    _, err = evaluation.communicate(timeout=300)
    assert evaluation.returncode == 0, err
    report = json.loads(report_path.read_text())
    assert [(r["subject"], r["contrast"]) for r in report["results"]] == [("AURORA-MET-example", "flair")]
    assert 0 <= report["results"][0]["nmse_brain"] and -1 <= report["results"][0]["ssim_brain"] <= 1
    assert "BraSyn" in report["normalisation"] and "N4" in report["reference"]


def test_a_resumed_run_reports_the_rate_of_its_own_steps(capsys):
    """A run resumed at step 2700 that has done 10 steps in 0.2 s shows about 50 steps/s and the time left for
    the 3290 steps to go, not 2710 steps' worth of rate (the bar once read 47 steps/s on a CPU doing 0.6)."""
    import time

    from CollaGANImputeLib.core.progress import ProgressReporter

    reporter = ProgressReporter("training", 6000, start=2700)
    reporter.update(2700, 6000)
    time.sleep(0.2)
    reporter.update(2710, 6000)
    rate = reporter._bar.format_dict
    reporter.close()
    steps_per_second = (rate["n"] - rate["initial"]) / rate["elapsed"]
    assert rate["initial"] == 2700 and 10 < steps_per_second < 60
    assert "2710/6000" in capsys.readouterr().err
