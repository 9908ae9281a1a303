"""--prepare: bring a raw clinical study to the form the model was trained on, impute, and map the result back.

A study off the scanner has the skull, each series on its own grid and thick slices; the model was trained on
skull-stripped, co-registered 1 mm studies. The pipeline is a row of small steps, each replaceable:

1. `register_rigid`: every input onto the reference (rigid, Mattes mutual information, SimpleITK), with
   the transform and the similarity before and after, so a failed registration shows;
2. brain extraction (brain_extraction.py: the user's mask, ROBEX, or a tool's command line) on the
   registered inputs;
3. `model_grid`: resampling to the model's spacing (1 mm) over the reference's field of view, in its
   orientation, every voxel outside the brain zero;
4. imputation (imputation.impute_all, with its out-of-distribution checks, on the prepared study);
5. `to_reference`: the imputation back on the reference grid, zero outside the brain.

`keep_intermediate` writes each step's output for inspection (`write_intermediate`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import Cancelled
from ..io.atomic import atomic_path, write_text_atomic
from ..io.geometry import describe_grid, resample_onto
from ..io.volumes import write_volumes
from .brain_extraction import AUTO, BrainExtractor
from .ood_checks import MODEL_SPACING_MM

Step = Callable[[str], None]  # told, in words, which step starts


@dataclass
class PrepareOptions:
    """How to prepare: the brain extractor (brain_extraction.load_brain_extractor; a given mask wins), the
    folder for each step's output (None: keep nothing), the spacing the model was trained on, and whom to tell
    which step starts (registration and brain extraction take a minute or two)."""

    brain_extractor: str = AUTO
    keep_intermediate: Path | None = None
    spacing_mm: float = MODEL_SPACING_MM
    on_step: Step | None = None


@dataclass
class Registration:
    """A rigid transform from reference-space points into an input's space (what resampling needs) and how
    alike the two images are before and after (Mattes mutual information, higher is more alike)."""

    contrast: str
    transform: sitk.Euler3DTransform
    similarity_before: float
    similarity_after: float

    def describe(self, reference: str) -> str:
        t = self.transform
        angles = ", ".join(f"{math.degrees(a):.1f}" for a in (t.GetAngleX(), t.GetAngleY(), t.GetAngleZ()))
        shift = ", ".join(f"{v:.1f}" for v in t.GetTranslation())
        return (f"{display_name(self.contrast)} registered rigidly to {display_name(reference)}: rotation ({angles}) degrees, "
                f"translation ({shift}) mm, mutual information {self.similarity_before:.3f} -> {self.similarity_after:.3f}")

    def as_dict(self) -> dict:
        t = self.transform
        return {"rotation_degrees": [math.degrees(a) for a in (t.GetAngleX(), t.GetAngleY(), t.GetAngleZ())],
                "translation_mm": list(t.GetTranslation()), "center_mm": list(t.GetCenter()),
                "mutual_information_before": self.similarity_before, "mutual_information_after": self.similarity_after}


@dataclass
class PreparedInputs:
    """The study after steps 1-3: inputs on the reference grid (registered) and on the model grid (registered,
    skull-stripped), the brain mask on both, and what was done, in words."""

    reference_key: str
    reference: sitk.Image
    on_reference: dict[str, sitk.Image]
    reference_mask: sitk.Image
    images: dict[str, sitk.Image]
    mask: sitk.Image
    registrations: dict[str, Registration]
    extractor: str
    notes: list[str] = field(default_factory=list)


def _registration_method(seed: int = 1) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed)  # a fixed seed: the same study registers the same way every time
    method.SetInterpolator(sitk.sitkLinear)
    return method


def register_rigid(reference: sitk.Image, moving: sitk.Image, contrast: str) -> Registration:
    """Step 1: a rigid (Euler) transform aligning `moving` to `reference`, started from their centres of mass,
    coarse to fine (4, 2, 1 times subsampled)."""
    transform = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        reference, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    method = _registration_method()
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=200, relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    before = -method.MetricEvaluate(reference, moving)
    method.Execute(reference, moving)
    after = _registration_method()
    after.SetInitialTransform(transform, inPlace=False)
    return Registration(contrast, transform, before, -after.MetricEvaluate(reference, moving))


def model_grid(reference: sitk.Image, spacing: float) -> sitk.Image:
    """Step 3's grid: `spacing` mm voxels over the reference's field of view, in its orientation."""
    old = np.array(reference.GetSpacing())
    extent = np.array(reference.GetSize()) * old
    size = [max(1, int(math.ceil(e / spacing - 1e-6))) for e in extent]
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    # The first voxel's corner stays where the reference's is.
    origin = np.array(reference.GetOrigin()) + direction @ ((spacing - old) / 2.0)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return grid


def _resample(image: sitk.Image, grid: sitk.Image, transform: sitk.Transform | None = None) -> sitk.Image:
    return sitk.Resample(image, grid, transform or sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _mask_on(mask: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """A binary mask on another grid: linear interpolation of the 0/1 mask, thresholded at one half."""
    return sitk.Cast(_resample(sitk.Cast(mask, sitk.sitkFloat32), grid) > 0.5, sitk.sitkUInt8)


def _masked(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    return sitk.Mask(image, mask, outsideValue=0.0)


def prepare_inputs(images: Mapping[str, sitk.Image], reference_key: str, extractor: BrainExtractor, spacing: float, *,
                   step: Step | None = None, cancel: Callable[[], bool] | None = None) -> PreparedInputs:
    """Steps 1-3 on images already read. Inputs are only read."""
    def starting(what: str) -> None:
        if cancel is not None and cancel():
            raise Cancelled("preparation cancelled")
        if step is not None:
            step(what)

    reference = images[reference_key]
    registrations: dict[str, Registration] = {}
    on_reference: dict[str, sitk.Image] = {reference_key: reference}
    for key, image in images.items():
        if key == reference_key:
            continue
        starting(f"registering {display_name(key)} to {display_name(reference_key)}")
        registrations[key] = register_rigid(reference, image, key)
        on_reference[key] = _resample(image, reference, registrations[key].transform)
    starting(f"extracting the brain ({extractor.name})")
    reference_mask = extractor.extract(on_reference)
    starting(f"resampling to {spacing:g} mm")
    grid = model_grid(reference, spacing)
    mask = _mask_on(reference_mask, grid)
    prepared = {key: _masked(_resample(image, grid, registrations[key].transform if key in registrations else None), mask)
                for key, image in images.items()}
    volume = float(sitk.GetArrayViewFromImage(reference_mask).sum() * np.prod(reference.GetSpacing()) / 1000.0)
    notes = [registration.describe(reference_key) for registration in registrations.values()]
    notes += [f"brain extracted by {extractor.name}: {volume:.0f} ml",
              f"inputs resampled to {spacing:g} mm ({describe_grid(grid)}) for the model; the imputation was mapped back onto "
              f"the {display_name(reference_key)} grid ({describe_grid(reference)}), zero outside the brain"]
    return PreparedInputs(reference_key, reference, on_reference, reference_mask, prepared, mask, registrations, extractor.name, notes)


def to_reference(image: sitk.Image, prepared: PreparedInputs) -> sitk.Image:
    """Step 5: an image on the model grid back on the reference grid, zero outside the brain."""
    return _masked(resample_onto(image, prepared.reference), prepared.reference_mask)



def write_intermediate(folder: Path, prepared: PreparedInputs, imputed: Mapping[str, sitk.Image]) -> list[Path]:
    """Each step's output, for inspection: registered inputs and the brain mask on the reference grid, the
    transforms, the inputs and mask on the model grid, the imputations there, and prepare.json."""
    folder = Path(folder)
    files = {folder / f"1_{key}_registered.nii.gz": image for key, image in prepared.on_reference.items()}
    files[folder / "2_brain_mask.nii.gz"] = prepared.reference_mask
    files.update({folder / f"3_{key}_prepared.nii.gz": image for key, image in prepared.images.items()})
    files[folder / "3_brain_mask_prepared.nii.gz"] = prepared.mask
    files.update({folder / f"4_{key}_imputed_prepared.nii.gz": image for key, image in imputed.items()})
    written = write_volumes(files)
    for key, registration in prepared.registrations.items():
        with atomic_path(folder / f"1_{key}_to_{prepared.reference_key}.tfm") as temp:
            sitk.WriteTransform(registration.transform, str(temp))
        written.append(folder / f"1_{key}_to_{prepared.reference_key}.tfm")
    report = {"reference": prepared.reference_key, "brain_extractor": prepared.extractor,
              "registrations": {key: r.as_dict() for key, r in prepared.registrations.items()}, "notes": prepared.notes}
    write_text_atomic(folder / "prepare.json", json.dumps(report, indent=2) + "\n")
    return [*written, folder / "prepare.json"]
