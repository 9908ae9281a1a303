"""The raw TCGA-FG-6692 study through --prepare, judged against the same patient's skull-stripped, co-registered
copy: brain mask Dice (the copy's brain registered into native space) and the imputed T1Gd's brain SSIM against
the real post-contrast series (registered onto the T1), next to what the copy itself scores. Writes
results/raw_study.json and the README figure results/raw_study.png (raw T1, brain mask, imputed and real T1Gd).

    collagan-impute impute --study ../shared/data/raw/TCGA-FG-6692-native --missing t1gd -o /tmp/raw/t1gd.nii.gz \
        --prepare --keep-intermediate /tmp/raw/steps
    python benchmarks/raw_study.py --output /tmp/raw/t1gd.nii.gz --steps /tmp/raw/steps
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.analysis.evaluation import score_imputation
from CollaGANImputeLib.inference.imputation import Imputation, impute
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.io.geometry import to_canonical_array
from CollaGANImputeLib.io.montage import montage_image, write_png
from CollaGANImputeLib.io.series_recognition import recognise_study
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.brain_prep import register_rigid
from CollaGANImputeLib.preparation.study import prepare_study

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COPY = {k: DATA / "brats4" / "TCGA-FG-6692" / f"OtherEXampleFromTCIA_{name}_bet.nii.gz"
        for k, name in (("t1", "t1"), ("t1gd", "t1c"), ("t2", "t2"), ("flair", "fla"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the imputed T1Gd of the --prepare run")
    parser.add_argument("--steps", type=Path, required=True, help="its --keep-intermediate folder")
    args = parser.parse_args()
    files = recognise_study(DATA / "raw" / "TCGA-FG-6692-native", list(COPY)).files
    t1 = sitk.ReadImage(str(files["t1"]), sitk.sitkFloat32)
    imputed, mask = sitk.ReadImage(str(args.output), sitk.sitkFloat32), sitk.ReadImage(str(args.steps / "2_brain_mask.nii.gz"))
    copy_t1 = sitk.ReadImage(str(COPY["t1"]), sitk.sitkFloat32)
    copy_brain = np.logical_or.reduce([sitk.GetArrayFromImage(sitk.ReadImage(str(p))) > 0 for p in COPY.values()])
    copy_mask = sitk.GetImageFromArray(copy_brain.astype(np.float32))
    copy_mask.CopyInformation(copy_t1)
    to_native = register_rigid(t1, copy_t1, "t1")
    truth = sitk.GetArrayFromImage(sitk.Resample(copy_mask, t1, to_native.transform, sitk.sitkLinear, 0.0)) > 0.5
    brain = sitk.GetArrayFromImage(mask) > 0
    dice = float(2 * (brain & truth).sum() / (brain.sum() + truth.sum()))
    real = sitk.ReadImage(str(files["t1gd"]), sitk.sitkFloat32)
    real_to_t1 = register_rigid(t1, real, "t1gd")
    real = sitk.Resample(real, t1, real_to_t1.transform, sitk.sitkLinear, 0.0)
    study = prepare_study({"t1": t1}, list(COPY), mask=mask)
    raw_score, real_array = score_imputation(Imputation(imputed, "t1gd", study), real)
    copy_score, _ = score_imputation(impute({k: COPY[k] for k in ("t1", "t2", "flair")}, "t1gd", load_model()), COPY["t1gd"])
    report = {"dice_brain_mask": dice, "copy_registration": to_native.describe("t1"), "real_t1gd_registration": real_to_t1.describe("t1"),
              "raw_prepared": raw_score, "preprocessed_copy": copy_score,
              "ssim_brain_difference": raw_score["ssim_brain"] - copy_score["ssim_brain"]}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / "raw_study.json", json.dumps(report, indent=2) + "\n")
    canonical_mask = to_canonical_array(mask) > 0
    raw_t1 = to_canonical_array(t1)
    panels = [("T1 as acquired", raw_t1), ("T1 in the brain mask (ROBEX)", np.where(canonical_mask, raw_t1, 0.0)),
              ("T1Gd imputed (--prepare)", to_canonical_array(imputed)), ("T1Gd real (registered)", real_array)]
    write_png(montage_image(panels, canonical_mask), RESULTS / "raw_study.png")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=2),
          f"\nSSIM(brain) raw {raw_score['ssim_brain']:.3f}, copy {copy_score['ssim_brain']:.3f}")


if __name__ == "__main__":
    main()
