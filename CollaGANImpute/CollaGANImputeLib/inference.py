"""Imputing a missing contrast of a whole volume, slice by slice, on the reference grid."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from .contrasts import display_name
from .errors import Cancelled, InputError
from .model_io import Model
from .networks import Generator
from .study import PreparedStudy, VolumeSource, brain_slices, padded_bounds, prepare_study

Progress = Callable[[int, int], None]  # (slices done, slices in all)
CancelCheck = Callable[[], bool]


@dataclass
class Imputation:
    """The imputed volume on the reference grid, the prepared study it came from, and notes for the user."""

    image: sitk.Image
    missing: str
    study: PreparedStudy

    @property
    def notes(self) -> list[str]:
        return self.study.notes


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but PyTorch finds no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


def one_hot(index: int, count: int, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    target = torch.zeros(batch, count, device=device)
    target[:, index] = 1.0
    return target


def synthesise(
    generator: Generator,
    stack: np.ndarray,
    target: int,
    mask: np.ndarray,
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Synthesise contrast `target` for every brain slice of a canonical study.

    stack: (N, S, H, W) normalised contrasts, absent ones zero; mask: (S, H, W). Slices without brain are
    skipped, each slice is cropped to the brain's bounding box (padded to the network's multiple) and
    slices go through the generator in batches. Returns (S, H, W), zero outside the mask.
    """
    device = next(generator.parameters()).device
    count = stack.shape[0]
    rows, cols, (pad_rows, pad_cols) = padded_bounds(mask, generator.config.size_multiple)
    slices = brain_slices(mask)
    output = np.zeros(mask.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            if cancel is not None and cancel():
                raise Cancelled("imputation cancelled")
            chosen = slices[start : start + batch_size]
            batch = torch.from_numpy(np.ascontiguousarray(stack[:, chosen, rows, cols].transpose(1, 0, 2, 3)))
            batch[:, target] = 0.0
            batch = torch.nn.functional.pad(batch, (0, pad_cols, 0, pad_rows)).to(device)
            result = generator(batch, one_hot(target, count, len(chosen), device)).float().cpu().numpy()
            output[chosen, rows, cols] = result[:, 0, : rows.stop - rows.start, : cols.stop - cols.start]
            if progress is not None:
                progress(min(start + batch_size, len(slices)), len(slices))
    output[~mask] = 0.0
    return output


def check_request(model: Model, inputs: Mapping[str, object], missing: str) -> None:
    """The model must know every contrast involved, and get every one but the missing."""
    contrasts = model.contrasts
    if missing not in contrasts:
        raise InputError(f"missing contrast {display_name(missing)}: model '{model.name}' imputes only {', '.join(contrasts)}")
    if missing in inputs:
        raise InputError(f"{display_name(missing)} is the contrast to impute, so it cannot also be an input")
    unknown = [k for k in inputs if k not in contrasts]
    if unknown:
        raise InputError(
            f"{', '.join(display_name(k) for k in unknown)}: model '{model.name}' does not take this contrast (it takes {', '.join(contrasts)})"
        )
    absent = [k for k in contrasts if k != missing and k not in inputs]
    if absent:
        raise InputError(
            f"model '{model.name}' needs {', '.join(display_name(k) for k in contrasts if k != missing)} to impute "
            f"{display_name(missing)}; no volume was given for {', '.join(display_name(k) for k in absent)}"
        )


def impute(
    inputs: Mapping[str, VolumeSource],
    missing: str,
    model: Model,
    *,
    mask: VolumeSource | None = None,
    reference: str | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> Imputation:
    """Impute `missing` from `inputs` (contrast key -> file path or SimpleITK image).

    The result lies on the reference grid (the first input in the model's order unless `reference`
    says otherwise) with its origin, spacing and direction exactly; intensities are in brain standard
    deviations (see the model card's output_intensity) and zero outside the brain mask. Inputs are
    only read.
    """
    check_request(model, inputs, missing)
    study = prepare_study(inputs, model.contrasts, reference=reference, mask=mask)
    stack = np.stack([study.images.get(k, np.zeros_like(study.mask, dtype=np.float32)) for k in model.contrasts])
    volume = synthesise(
        model.generator, stack, model.contrasts.index(missing), study.mask,
        batch_size=batch_size, progress=progress, cancel=cancel,
    )
    return Imputation(study.to_reference_image(volume), missing, study)
