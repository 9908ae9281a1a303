"""The bundled sample case end to end: impute one contrast, score it, draw it."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.contrasts import display_name
from ..inference.imputation import impute
from ..inference.synthesis import select_device
from ..io.atomic import write_text_atomic
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


def run_demo(missing: str, out_dir: str | Path, weights: str | Path | None = None, device: str = "auto") -> dict[str, Path]:
    """Impute `missing` from the sample case's other contrasts; write the volume, metrics and a montage."""
    model = load_model(weights, select_device(device))
    files = sample_case_files(model.contrasts)
    inputs = {k: v for k, v in files.items() if k != missing}
    result = impute(inputs, missing, model)
    out_dir = Path(out_dir)
    stem = f"{SAMPLE_CASE.name}_{missing}_collagan"
    volume_path = write_volume(result.image, out_dir / f"{stem}.nii.gz")

    fake = to_canonical_array(result.image)
    scores, real = score_imputation(result, files[missing])
    metrics = {"case": SAMPLE_CASE.name, "missing": missing, "model": model.name, **scores}
    metrics_path = out_dir / f"{stem}_metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")

    panels = [(f"{display_name(k)} (input)", result.study.images[k]) for k in model.contrasts if k in inputs]
    panels += [(f"{display_name(missing)} imputed", fake), (f"{display_name(missing)} real", real),
               ("|imputed - real|", abs(fake - real))]
    montage = montage_image(panels, result.study.mask, shared_window=(len(panels) - 2, len(panels) - 3))
    montage_path = write_png(montage, out_dir / f"{stem}_montage.png")
    return {"volume": volume_path, "metrics": metrics_path, "montage": montage_path}
