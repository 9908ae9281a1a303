"""The bundled sample case end to end: impute one contrast, score it, draw it."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.contrasts import display_name
from ..inference.imputation import impute
from ..inference.synthesis import select_device
from ..io.atomic import check_outputs, write_text_atomic
from ..io.geometry import to_canonical_array
from ..io.montage import montage_image, write_png
from ..io.series_recognition import find_study_files
from ..io.volumes import write_volume
from ..model.model_card import BUNDLED_MODELS
from ..model.weights import load_model
from .evaluation import score_imputation

SAMPLE_CASE = BUNDLED_MODELS.parent / "SampleData" / "BraTS-GLI-00001-000"


def sample_case_files(contrasts: list[str]) -> dict[str, Path]:
    """The sample case's files by contrast, recognised from their BraTS 2023 names."""
    return find_study_files(SAMPLE_CASE, contrasts)


def demo_paths(missing: str, out_dir: str | Path) -> dict[str, Path]:
    """The volume, metrics and montage `run_demo` writes."""
    stem = f"{SAMPLE_CASE.name}_{missing}_collagan"
    return {"volume": Path(out_dir) / f"{stem}.nii.gz", "metrics": Path(out_dir) / f"{stem}_metrics.json",
            "montage": Path(out_dir) / f"{stem}_montage.png"}


def run_demo(missing: str, out_dir: str | Path, weights: str | Path | None = None, device: str = "auto", *,
             overwrite: bool = False) -> dict[str, Path]:
    """Impute `missing` from the sample case's other contrasts; write the volume, metrics and a montage (existing
    files only with `overwrite`, checked before any work)."""
    paths = demo_paths(missing, out_dir)
    check_outputs(paths.values(), overwrite=overwrite)
    model = load_model(weights, select_device(device))
    files = sample_case_files(model.contrasts)
    inputs = {k: v for k, v in files.items() if k != missing}
    result = impute(inputs, missing, model)
    write_volume(result.image, paths["volume"])

    fake = to_canonical_array(result.image)
    scores, real = score_imputation(result, files[missing])
    metrics = {"case": SAMPLE_CASE.name, "missing": missing, "model": model.name, **scores}
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2) + "\n")

    panels = [(f"{display_name(k)} (input)", result.study.images[k]) for k in model.contrasts if k in inputs]
    panels += [(f"{display_name(missing)} imputed", fake), (f"{display_name(missing)} real", real),
               ("|imputed - real|", abs(fake - real))]
    montage = montage_image(panels, result.study.mask, shared_window=(len(panels) - 2, len(panels) - 3))
    write_png(montage, paths["montage"])
    return paths
