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


def _padding(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return -size[0] % multiple, -size[1] % multiple


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def synthesise(
    generator: Generator,
    stack: np.ndarray,
    target: int,
    mask: np.ndarray,
    *,
    batch_size: int = 8,
    crop: bool = True,
    channels_last: bool | None = None,
    bf16: bool = False,
    compiled: bool = False,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Synthesise contrast `target` for every brain slice of a canonical study (the fast path).

    stack: (N, S, H, W) normalised contrasts, absent ones zero; mask: (S, H, W). Slices without brain are
    skipped (their output is zero anyway) and slices go through the generator in batches; both are exact.
    `crop` cuts each slice to the brain's bounding box (padded to the network's multiple): this is most
    of the speed-up, but NOT exact, because instance normalisation and CCAM average over the whole
    slice, so the amount of background changes the result (the box is closer to the training canvas;
    README, "Speed and scale", gives the measured difference to full 240x240 slices).
    `channels_last` (default: on CUDA only, it measured no faster on CPU), `bf16` autocast and `compiled`
    (torch.compile with CUDA graphs on CUDA; the last batch is padded so that one graph serves all) only
    trade speed for float rounding. Returns (S, H, W), zero outside the mask.
    """
    device = next(generator.parameters()).device
    count = stack.shape[0]
    multiple = generator.config.size_multiple
    if crop:
        rows, cols, (pad_rows, pad_cols) = padded_bounds(mask, multiple)
    else:
        rows, cols, (pad_rows, pad_cols) = slice(0, mask.shape[1]), slice(0, mask.shape[2]), _padding(mask.shape[1:], multiple)
    layout = torch.channels_last if (device.type == "cuda" if channels_last is None else channels_last) else torch.contiguous_format
    network = generator.to(memory_format=layout)
    if compiled:
        network = torch.compile(network, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)
    slices = brain_slices(mask)
    output = np.zeros(mask.shape, dtype=np.float32)
    try:
        with torch.inference_mode(), _autocast(device, bf16):
            for start in range(0, len(slices), batch_size):
                if cancel is not None and cancel():
                    raise Cancelled("imputation cancelled")
                chosen = slices[start : start + batch_size]
                batch = torch.from_numpy(np.ascontiguousarray(stack[:, chosen, rows, cols].transpose(1, 0, 2, 3)))
                batch[:, target] = 0.0
                batch = torch.nn.functional.pad(batch, (0, pad_cols, 0, pad_rows, 0, 0, 0, batch_size - len(chosen) if compiled else 0))
                batch = batch.to(device, non_blocking=True).contiguous(memory_format=layout)
                result = network(batch, one_hot(target, count, batch.shape[0], device)).float().cpu().numpy()
                output[chosen, rows, cols] = result[: len(chosen), 0, : rows.stop - rows.start, : cols.stop - cols.start]
                if progress is not None:
                    progress(min(start + batch_size, len(slices)), len(slices))
    finally:
        generator.to(memory_format=torch.contiguous_format)
    output[~mask] = 0.0
    return output


def synthesise_naive(generator: Generator, stack: np.ndarray, target: int, mask: np.ndarray) -> np.ndarray:
    """The reference the fast path is measured against: every full-size slice, one at a time, fp32,
    no skipping, no cropping. Same arguments and result as `synthesise`."""
    device = next(generator.parameters()).device
    count, height, width = stack.shape[0], *mask.shape[1:]
    pad_rows, pad_cols = _padding((height, width), generator.config.size_multiple)
    output = np.zeros(mask.shape, dtype=np.float32)
    with torch.inference_mode():
        for index in range(mask.shape[0]):
            image = torch.from_numpy(np.ascontiguousarray(stack[None, :, index]))
            image[:, target] = 0.0
            image = torch.nn.functional.pad(image, (0, pad_cols, 0, pad_rows)).to(device)
            output[index] = generator(image, one_hot(target, count, 1, device))[0, 0, :height, :width].cpu().numpy()
    output[~mask] = 0.0
    return output


def network_stack(study: PreparedStudy, contrasts: list[str]) -> np.ndarray:
    """The (N, S, H, W) array the network reads, in model order, absent contrasts zero."""
    return np.stack([study.images.get(k, np.zeros_like(study.mask, dtype=np.float32)) for k in contrasts])


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
    bf16: bool = False,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> Imputation:
    """Impute `missing` from `inputs` (contrast key -> file path or SimpleITK image).

    The result lies on the reference grid (the first input in the model's order unless `reference`
    says otherwise) with its origin, spacing and direction exactly; intensities are in brain standard
    deviations (see the model card's output_intensity) and zero outside the brain mask. Inputs are
    only read. `bf16` autocast is faster, within the tolerance README documents.
    """
    check_request(model, inputs, missing)
    study = prepare_study(inputs, model.contrasts, reference=reference, mask=mask)
    volume = synthesise(
        model.generator, network_stack(study, model.contrasts), model.contrasts.index(missing), study.mask,
        batch_size=batch_size, bf16=bf16, progress=progress, cancel=cancel,
    )
    return Imputation(study.to_reference_image(volume), missing, study)
