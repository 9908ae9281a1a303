"""Scoring imputations against the real contrast: one subject, or a whole data set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..core.metrics import NORMALISATION, image_metrics, require_scorable
from ..core.orientations import DEFAULT_PLANES, check_planes
from ..inference.imputation import Imputation
from ..inference.synthesis import ServedInputs, check_views, precision_of
from ..io.geometry import resample_onto, same_grid, to_canonical_array
from ..model.weights import Model
from ..preparation.bias_field import METHOD as BIAS_METHOD
from ..preparation.bias_field import bias_corrected as corrected
from ..preparation.data import Subject, prepare_subject
from ..preparation.study import VolumeSource, load_volume, normalise_in_brain

METRIC_NAMES = ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")


def real_on_grid(imputation: Imputation, real: VolumeSource) -> np.ndarray:
    """The real volume of the imputed contrast as a canonical array on the imputation's grid, negatives set
    to 0, still in its own units (a scan's stored integers, unless it had to be resampled)."""
    image = load_volume(real, imputation.missing)
    if not same_grid(image, imputation.study.reference):
        image = resample_onto(image, imputation.study.reference)
    return np.clip(to_canonical_array(image), 0.0, None)


def real_on_reference(imputation: Imputation, real: VolumeSource) -> np.ndarray:
    """`real_on_grid` in the imputation's units (divided by its standard deviation over the same brain mask)."""
    array = real_on_grid(imputation, real)
    normalise_in_brain(array, imputation.study.mask)
    return array


def score_imputation(imputation: Imputation, real: VolumeSource) -> tuple[dict, np.ndarray]:
    """SSIM, PSNR and NMSE of an imputation against the real volume, inside the brain mask, and that real
    volume as `real_on_reference` made it (for a difference map or a figure, without reading it again)."""
    require_scorable(imputation.study.mask.shape, f"the study imputed ({display_name(imputation.missing)})")
    array = real_on_reference(imputation, real)
    return image_metrics(array, to_canonical_array(imputation.image), imputation.study.mask), array


def evaluate_subjects(
    model: Model,
    subjects: Sequence[Subject],
    missing: Sequence[str] | None = None,
    *,
    batch_size: int = 8,
    bias_corrected: bool = False,
    views: int = 1,
    planes: int = DEFAULT_PLANES,
    bf16: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Impute each contrast of each subject from the others, each by the model that serves it (`Model.serving`: the
    companion where the card names one); metrics per subject and contrast, and means.

    With `bias_corrected`, each real volume is first freed of its coil shading (bias_field.py), which no
    imputation reproduces; the report's "reference" says which was scored against. `views` > 1 scores the
    test-time average of that many shifted and mirrored views (`synthesis.synthesise`), as `impute --views` delivers;
    `planes` 3 (the default) the average of the axial, coronal and sagittal passes, 1 the axial pass alone; `bf16` as
    for `synthesise` (default: where the CPU computes it natively)."""
    contrasts = model.contrasts
    targets = list(missing or contrasts)
    unknown = [display_name(k) for k in targets if k not in contrasts]
    if unknown:
        raise InputError(f"{', '.join(unknown)}: model '{model.name}' imputes only {', '.join(display_name(k) for k in contrasts)}")
    check_views(views)
    check_planes(planes)
    results = []
    for subject in subjects:
        study = prepare_subject(subject, contrasts)
        require_scorable(study.mask.shape, f"subject '{subject.name}'")
        inputs = ServedInputs(study)
        for key in targets:
            if progress is not None:
                progress(f"{subject.name}: {key}")
            server, fake = inputs.impute(model, key, batch_size=batch_size, views=views, planes=planes, bf16=bf16)
            real = study.images[key]
            if bias_corrected:
                real = corrected(real, study.mask, study.canonical_spacing, what=f"the real {display_name(key)} of '{subject.name}'")
            scores = image_metrics(real, fake, study.mask)
            results.append({"subject": subject.name, "contrast": key, "by": server.name, **{m: scores[m] for m in METRIC_NAMES}})
    means = {
        key: {m: float(np.mean([r[m] for r in results if r["contrast"] == key])) for m in METRIC_NAMES} for key in targets
    }
    return {
        "model": model.name,
        "weights": str(Path(model.weights_path)),
        "normalisation": NORMALISATION,
        "reference": f"the real volume after {BIAS_METHOD}" if bias_corrected else "the real volume as acquired",
        "views": views,
        "planes": planes,
        "precision": precision_of(model.generator, bf16),
        "ssim": "3-D SSIM, 7-voxel window; ssim_brain averages the SSIM map over the brain mask, ssim_volume over the whole volume",
        "results": results,
        "mean": means,
    }
