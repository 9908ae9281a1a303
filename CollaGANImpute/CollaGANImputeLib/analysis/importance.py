"""Contrast importance, the paper's central question: which contrast can be imputed from the others
(redundant) and which cannot (indispensable)?

For each subject with every contrast of the model, each contrast in turn is imputed from the others by the model that
serves that request (`Model.serving`: the card's companion where it names one, as `impute` would) and compared with
the real one, over the brain, inside the tumour regions (regions.py: from a label map, else the enhancement proxy)
and in the brain outside them. With a segmenter (segmenters.py), the study is also segmented from its real
contrasts and from the contrasts with the imputed one in place of the real one; the Dice of each tumour
region says what the segmentation loses. The contrasts are then ranked by one stated score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import Cancelled, InputError
from ..core.metrics import image_metrics, require_scorable
from ..inference.synthesis import ServedInputs
from ..io.geometry import describe_grid, resample_onto, same_grid, to_canonical_array
from ..model.weights import Model
from ..preparation.data import Subject, prepare_subject
from ..preparation.regions import REGIONS, TumourRegions, dice, proxy_regions, regions_from_labels
from ..preparation.segmenters import Segmenter
from ..preparation.study import PreparedStudy, VolumeSource, prepare_study
from .importance_report import METRICS, OUTSIDE, REGION_METRICS, TIE_BREAK, ImportanceReport, mean_of_present, paired_test

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)
CancelCheck = Callable[[], bool]



def _label_array(labels: VolumeSource, study: PreparedStudy, where: str) -> tuple[np.ndarray, list[str]]:
    """A label map as a canonical array on the study's grid (nearest neighbour when it must be resampled)."""
    if isinstance(labels, sitk.Image):
        image = labels
    else:
        if not Path(labels).is_file():
            raise InputError(f"label map {where} does not exist")
        try:
            image = sitk.ReadImage(str(labels))
        except RuntimeError as error:
            raise InputError(f"cannot read label map {where}: {str(error).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"label map {where} is not a 3-D scalar volume")
    notes = []
    if not same_grid(image, study.reference):
        notes.append(f"label map {where} ({describe_grid(image)}) was resampled (nearest neighbour) onto the study grid "
                     f"({describe_grid(study.reference)})")
        image = resample_onto(image, study.reference, nearest=True)
    return to_canonical_array(image), notes


def _segment(segmenter: Segmenter, study: PreparedStudy, arrays: Mapping[str, np.ndarray], where: str) -> TumourRegions:
    """Run the segmenter on canonical arrays (passed as images on the reference grid), read its regions."""
    images = {key: study.to_reference_image(array) for key, array in arrays.items()}
    labels = to_canonical_array(segmenter(images))
    return regions_from_labels(labels, where)


class _Steps:
    """Progress over every subject's steps, and the cancel check between them."""

    def __init__(self, total: int, progress: Progress | None, cancel: CancelCheck | None) -> None:
        self.total, self.done, self.progress, self.cancel = total, 0, progress, cancel

    def start(self, stage: str) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("importance analysis cancelled")
        if self.progress is not None:
            self.progress(self.done, self.total, stage)
        self.done += 1


def _analyse_prepared(name: str, study: PreparedStudy, model: Model, labels: np.ndarray | None, label_where: str,
                      convention: str | None, segmenter: Segmenter | None, steps: _Steps, batch_size: int) -> tuple[dict, list[dict]]:
    contrasts = model.contrasts
    require_scorable(study.mask.shape, f"subject '{name}'")
    if labels is not None:
        regions = regions_from_labels(labels, label_where, convention)
    elif {"t1", "t1gd"} <= set(contrasts):
        regions = proxy_regions(study.images["t1gd"], study.images["t1"], study.mask)
    else:
        raise InputError(f"subject '{name}': without a label map the tumour region is the enhancement proxy, which needs "
                         "T1 and T1Gd, and this model lacks one of them; give a label map")
    reference = regions
    if segmenter is not None:
        steps.start(f"{name}: segmenting the real inputs")
        real = _segment(segmenter, study, study.images, f"of subject '{name}' (real inputs) from segmenter {segmenter.name}")
        reference = regions if labels is not None else real
    inputs = ServedInputs(study)
    rows = []
    for key in contrasts:
        steps.start(f"{name}: imputing {display_name(key)}")
        server, fake = inputs.impute(model, key, batch_size=batch_size, cancel=steps.cancel)
        brain = image_metrics(study.images[key], fake, study.mask)
        row = {"subject": name, "contrast": key, "by": server.name, **{m: brain[m] for m in METRICS}, "regions": {}}
        for region, mask in regions.masks.items():
            inside = mask & study.mask
            scores = image_metrics(study.images[key], fake, study.mask, region=inside) if inside.any() else None
            row["regions"][region] = {"voxels": int(inside.sum()), **{m: scores[m] if scores else None for m in REGION_METRICS}}
        outside = study.mask & ~np.logical_or.reduce(list(regions.masks.values()))
        scores = image_metrics(study.images[key], fake, study.mask, region=outside) if outside.any() else None
        row[OUTSIDE] = {"voxels": int(outside.sum()), **{m: scores[m] if scores else None for m in REGION_METRICS}}
        ssim = mean_of_present([v["ssim_brain"] for v in row["regions"].values()])
        row["ssim_score"] = None if ssim is None else 1.0 - ssim
        row["score"] = row["ssim_score"]
        if segmenter is not None:
            steps.start(f"{name}: segmenting with {display_name(key)} imputed")
            row["dice_real"] = {r: dice(real.masks[r], reference.masks[r]) for r in REGIONS}
            row["segmenter_reads"] = segmenter.reads is None or key in segmenter.reads
            if row["segmenter_reads"]:
                imputed = _segment(segmenter, study, {**study.images, key: fake},
                                   f"of subject '{name}' ({display_name(key)} imputed) from segmenter {segmenter.name}")
                row["dice_imputed"] = {r: dice(imputed.masks[r], reference.masks[r]) for r in REGIONS}
            else:
                row["dice_imputed"] = dict(row["dice_real"])  # the segmenter never sees this contrast
            row["score"] = float(np.mean([row["dice_real"][r] - row["dice_imputed"][r] for r in REGIONS]))
        rows.append(row)
    trained_on = name in model.card.get("training", {}).get("train_subjects", [])
    return {"name": name, "trained_on": trained_on, "regions": regions.definition}, rows


def _steps_per_subject(model: Model, segmenter: Segmenter | None) -> int:
    return len(model.contrasts) * (2 if segmenter is not None else 1) + (1 if segmenter is not None else 0)


def _finish(model: Model, subjects: list[dict], rows: list[dict], segmenter: Segmenter | None, labels: bool,
            notes: list[str]) -> ImportanceReport:
    """Means per contrast, the paired tests, and the ranking by mean score (ties: model order)."""
    report = ImportanceReport(model.name, model.card.get("sha256", ""), model.contrasts, subjects,
                              None if segmenter is None else segmenter.name, labels, rows, notes=notes)
    for key in model.contrasts:
        mine = [r for r in rows if r["contrast"] == key]
        summary = {
            "score": mean_of_present([r["score"] for r in mine]),
            "score_per_subject": {r["subject"]: r["score"] for r in mine},
            "ssim_score": mean_of_present([r["ssim_score"] for r in mine]),
            **{m: mean_of_present([r[m] for r in mine]) for m in METRICS},
            "regions": {region: {m: mean_of_present([r["regions"][region][m] for r in mine]) for m in REGION_METRICS}
                        for region in report.region_keys},
            OUTSIDE: {m: mean_of_present([r[OUTSIDE][m] for r in mine]) for m in REGION_METRICS},
        }
        if segmenter is not None:
            summary["dice_real"] = {g: mean_of_present([r["dice_real"][g] for r in mine]) for g in REGIONS}
            summary["dice_imputed"] = {g: mean_of_present([r["dice_imputed"][g] for r in mine]) for g in REGIONS}
            summary["tests"] = {g: paired_test([r["dice_real"][g] for r in mine], [r["dice_imputed"][g] for r in mine]) for g in REGIONS}
            summary["tests"]["score"] = paired_test([r["score"] for r in mine], [0.0] * len(mine))
        report.summary[key] = summary
    by_companion = [display_name(k) for k in model.contrasts if any(r["by"] != model.name for r in rows if r["contrast"] == k)]
    if by_companion:
        report.notes.append(f"{', '.join(by_companion)} imputed by '{model.companion.name}', the companion of model '{model.name}' "
                            "for one missing contrast, as `impute` serves that request")
    unscored = [display_name(k) for k, s in report.summary.items() if s["score"] is None]
    if unscored:
        raise InputError(f"no subject has a voxel in the tumour regions, so {', '.join(unscored)} cannot be ranked "
                         "(give label maps or a segmenter)")
    if segmenter is not None and segmenter.reads is not None:
        unread = [display_name(k) for k in model.contrasts if k not in segmenter.reads]
        if unread:
            report.notes.append(f"segmenter {segmenter.name} does not read {', '.join(unread)}: its Dice loss there is 0 by "
                                f"construction (the contrast is redundant for this segmenter); {TIE_BREAK}")
    report.ranking = report.ranking_over([s["name"] for s in subjects])
    return report


def analyse_subjects(
    model: Model,
    subjects: Sequence[Subject],
    *,
    labels: Mapping[str, VolumeSource] | None = None,
    convention: str | None = None,
    segmenter: Segmenter | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> ImportanceReport:
    """The analysis over subjects with every contrast; `labels` maps subject name -> label map, for all or none."""
    if labels is not None:
        absent = [s.name for s in subjects if s.name not in labels]
        if absent:
            raise InputError(f"label maps were given for some subjects but not for {', '.join(absent)}; give them for all or none")
    steps = _Steps(len(subjects) * _steps_per_subject(model, segmenter), progress, cancel)
    described, rows, notes = [], [], []
    for subject in subjects:
        study = prepare_subject(subject, model.contrasts)
        label_array = None
        where = ""
        if labels is not None:
            source = labels[subject.name]
            where = f"'{source}'" if not isinstance(source, sitk.Image) else f"of subject '{subject.name}'"
            label_array, label_notes = _label_array(source, study, where)
            notes += label_notes
        notes += [f"{subject.name}: {note}" for note in study.notes]
        info, subject_rows = _analyse_prepared(subject.name, study, model, label_array, where, convention, segmenter, steps, batch_size)
        described.append(info)
        rows += subject_rows
    if progress is not None:
        progress(steps.total, steps.total, "done")
    return _finish(model, described, rows, segmenter, labels is not None, notes)


def analyse_study(
    images: Mapping[str, VolumeSource],
    model: Model,
    *,
    name: str = "study",
    labels: VolumeSource | None = None,
    mask: VolumeSource | None = None,
    convention: str | None = None,
    segmenter: Segmenter | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> ImportanceReport:
    """The analysis of one in-memory study (contrast key -> SimpleITK image or path), e.g. from Slicer.

    Needs every contrast of the model. With one study there is no paired test (it says so); the ranking
    is that study's.
    """
    absent = [display_name(k) for k in model.contrasts if k not in images]
    if absent:
        raise InputError(f"the importance analysis imputes every contrast from the others; no volume was given for {', '.join(absent)}")
    study = prepare_study(images, model.contrasts, mask=mask)
    label_array, notes = (None, []) if labels is None else _label_array(labels, study, f"of study '{name}'")
    steps = _Steps(_steps_per_subject(model, segmenter), progress, cancel)
    info, rows = _analyse_prepared(name, study, model, label_array, f"of study '{name}'", convention, segmenter, steps, batch_size)
    if progress is not None:
        progress(steps.total, steps.total, "done")
    return _finish(model, [info], rows, segmenter, labels is not None, notes + study.notes)


