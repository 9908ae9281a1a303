"""Synthesising one contrast of a prepared study slice by slice on the brain's canvas: the fast path, its
naive reference, the card's smoothing, and the array the network reads."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..core.errors import Cancelled, InputError
from ..core.orientations import DEFAULT_PLANES, PLANE_ORDERS, check_planes
from ..model.networks import Generator
from ..model.weights import Model
from ..preparation.bias_field import corrected_study
from ..preparation.brasyn_scale import brasyn_scaled_study
from ..preparation.study import PreparedStudy, brain_slices, padded_bounds, slice_planes
from .intensity_landmarks import model_landmarks

Progress = Callable[[int, int], None]  # (slices done, slices in all)
CancelCheck = Callable[[], bool]
# Views `synthesise(views=N)` averages, the first N: (margin added on every side of each batch's brain box, row
# shift, column shift) in voxels, and whether the slices are mirrored left-right. Small shifts move the canvas
# against the decoder's stride-2 grid, so its checkerboard (at periods of 2 to 8 voxels) changes phase between
# views and averages out; the first is the plain imputation. On the training subjects, 8 views on top of the
# card's smoothing raised mean brain SSIM by 0.023-0.033 per contrast (benchmarks/results/smoothing.md).
VIEWS = (((0, 0, 0), False), ((0, 0, 0), True), ((2, 1, 1), False), ((2, 1, 1), True),
         ((4, 2, 2), False), ((4, 2, 2), True), ((4, 3, 3), False), ((4, 3, 3), True))
PLAIN = (0, 0, 0)  # the canvas of the plain imputation: each batch's brain box as it is
# The shortest side of a batch's box: the training crop (128 x 128 crops of the brain's canvas), so that instance
# normalisation and CCAM never average over less than the network learned on. A box per batch of slices, at least
# this wide, imputed the four validation subjects faster and no worse than one box for the whole volume
# (docs/validation_rule.md, "A brain box per batch of slices"); with no floor, the top slices' 16-voxel boxes leave
# the bottleneck a single voxel, which instance normalisation cannot normalise.
SMALLEST_BOX = 128


def select_device(name: str = "auto") -> torch.device:
    """'auto' is the GPU when there is one, else the CPU; 'cuda' without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but PyTorch finds no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


def one_hot(index: int, count: int, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The generator's target code: which contrast to synthesise, for each of `batch` samples."""
    target = torch.zeros(batch, count, device=device)
    target[:, index] = 1.0
    return target


def _padding(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return -size[0] % multiple, -size[1] % multiple


def native_bf16(device: torch.device) -> bool:
    """Whether `synthesise` autocasts to bf16 on `device` unless told otherwise: on a CPU with bf16 arithmetic
    (AVX-512 bf16 or AMX), where it halves the time and moves the validation figures by at most 0.003 brain SSIM
    (docs/benchmarks.md); not on other CPUs, which only emulate it, nor on CUDA, where it did not shorten the time."""
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolved_bf16(device: torch.device, bf16: bool | None) -> bool:
    """`synthesise`'s `bf16` as it runs on `device`: None means `native_bf16`."""
    return native_bf16(device) if bf16 is None else bf16


def precision_of(generator: Generator, bf16: bool | None = None) -> str:
    """The arithmetic `synthesise` runs `generator` in, as reports name it: "bf16" or "fp32"."""
    return "bf16" if resolved_bf16(next(generator.parameters()).device, bf16) else "fp32"


def method_of(generator: Generator, planes: int, views: int = 1, bf16: bool | None = None) -> str:
    """How `synthesise` imputes with these options, as every output states it (the result depends on the CPU's
    arithmetic, so a file says which it got): e.g. "three slice orientations averaged, bf16"."""
    parts = ["three slice orientations averaged" if planes > 1 else "axial slices"] + [f"{views} views averaged"] * (views > 1)
    return ", ".join([*parts, precision_of(generator, bf16)])


def _autocast(device: torch.device, bf16: bool | None):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolved_bf16(device, bf16))


def synthesise(
    generator: Generator,
    stack: np.ndarray,
    target: int,
    mask: np.ndarray,
    *,
    batch_size: int = 8,
    crop: bool = True,
    canvas: tuple[int, int, int] = PLAIN,
    channels_last: bool | None = None,
    bf16: bool | None = None,
    compiled: bool = False,
    smoothing: tuple[float, float] = (0.0, 0.0),
    views: int = 1,
    planes: int = DEFAULT_PLANES,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Synthesise contrast `target` for every brain slice of a canonical study (the fast path).

    stack: (N, S, H, W) normalised contrasts, absent ones zero; mask: (S, H, W). Slices without brain are
    skipped (their output is zero anyway) and slices go through the generator in batches; both are exact.
    `crop` cuts each batch of slices to its brain's box (`batch_box`; `canvas` widens and shifts it): this is
    most of the speed-up, but NOT exact, because instance normalisation and CCAM average over the whole
    slice, so the amount of background changes the result (docs/benchmarks.md, "Fast path tolerance").
    `channels_last` (default: on CUDA only, it measured no faster on CPU), `bf16` autocast (default None: where
    `native_bf16`) and `compiled` (torch.compile with CUDA graphs on CUDA: one graph per box size, the last batch
    padded to the full batch) only trade speed for float rounding. `smoothing`: see `smooth_in_brain` ((0, 0):
    none; `model_smoothing` gives a model's). `views` > 1 averages the first `views` of VIEWS before smoothing
    (test-time augmentation: that many times slower; without `crop` only their mirroring applies, since their
    shifts move each batch's box). `planes` 3 (the default) imputes the study's axial, coronal and sagittal slices
    and averages the three, then gives the mean the intensity distribution of one pass (`quantile_restored`): three
    times the work of `planes` 1, the axial slices alone. Returns (S, H, W), zero outside the mask.
    """
    check_views(views)
    check_planes(planes)
    if planes > 1:
        orders = PLANE_ORDERS[:planes]
        counts = [views * len(brain_slices(mask.transpose(order))) for order in orders]  # each pass's own count of slices
        passes = []
        for number, order in enumerate(orders):
            counted = None if progress is None else (lambda done, _, n=number: progress(sum(counts[:n]) + done, sum(counts)))
            turned = synthesise(generator, stack.transpose((0, *(axis + 1 for axis in order))), target,
                                np.ascontiguousarray(mask.transpose(order)), planes=1, batch_size=batch_size, crop=crop, canvas=canvas,
                                channels_last=channels_last, bf16=bf16, compiled=compiled, views=views, progress=counted, cancel=cancel)
            passes.append(turned.transpose(np.argsort(order)))
        output = quantile_restored(np.mean(passes, axis=0), passes, mask)
        return smooth_in_brain(output, mask, smoothing) if any(smoothing) else output
    if views > 1:
        total = np.zeros(mask.shape, dtype=np.float64)
        for number, (shifted, mirror) in enumerate(VIEWS[:views]):
            counted = None if progress is None else (lambda done, count, n=number: progress(n * count + done, views * count))
            total += synthesise_on_canvas(generator, stack, target, mask, shifted, mirror, batch_size=batch_size, crop=crop,
                                          channels_last=channels_last, bf16=bf16, compiled=compiled, progress=counted, cancel=cancel)
        output = (total / views).astype(np.float32)
        return smooth_in_brain(output, mask, smoothing) if any(smoothing) else output
    device = next(generator.parameters()).device
    count = stack.shape[0]
    multiple = generator.config.size_multiple
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
                rows, cols = batch_box(mask, chosen, multiple, canvas) if crop else (slice(0, mask.shape[1]), slice(0, mask.shape[2]))
                height, width = rows.stop - rows.start, cols.stop - cols.start
                pad_rows, pad_cols = _padding((height, width), multiple)
                batch = network_batch(generator, stack[:, :, rows, cols], chosen, target)
                batch = torch.nn.functional.pad(batch, (0, pad_cols, 0, pad_rows, 0, 0, 0, batch_size - len(chosen) if compiled else 0))
                batch = batch.to(device, non_blocking=True).contiguous(memory_format=layout)
                result = network(batch, one_hot(target, count, batch.shape[0], device)).float().cpu().numpy()
                output[chosen, rows, cols] = result[: len(chosen), 0, :height, :width]
                if progress is not None:
                    progress(min(start + batch_size, len(slices)), len(slices))
    finally:
        generator.to(memory_format=torch.contiguous_format)
    output[~mask] = 0.0
    return smooth_in_brain(output, mask, smoothing) if any(smoothing) else output


def batch_box(mask: np.ndarray, chosen: np.ndarray, multiple: int, canvas: tuple[int, int, int] = PLAIN) -> tuple[slice, slice]:
    """Rows and columns the slices `chosen` are cut to: their brain's box rounded up to multiples of `multiple`
    (preparation.study.padded_bounds), widened about its centre to at least SMALLEST_BOX a side within the brain's
    box over the whole volume, then by `canvas`'s margin on every side and moved by its row and column shifts,
    within the image. The network pads what is not a multiple of `multiple`."""
    margin, down, right = canvas
    whole = padded_bounds(mask, multiple)[:2]
    box = []
    for part, within, shift, size in zip(padded_bounds(mask[chosen], multiple)[:2], whole, (down, right), mask.shape[1:]):
        length = min(max(part.stop - part.start, SMALLEST_BOX), within.stop - within.start)
        if length > part.stop - part.start:
            start = max(within.start, min((part.start + part.stop) // 2 - length // 2, within.stop - length))
            part = slice(start, start + length)
        box.append(slice(max(part.start - margin + shift, 0), min(part.stop + margin + shift, size)))
    return box[0], box[1]


def check_views(views: int) -> None:
    """Refuse a number of views VIEWS does not have, before any work starts."""
    if not 1 <= views <= len(VIEWS):
        raise InputError(f"views: {views} asked, but between 1 and {len(VIEWS)} shifted and mirrored views can be averaged")


def quantile_restored(mean: np.ndarray, passes: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """`mean`'s brain voxels given, rank for rank, the mean of the passes' sorted brain intensities: the structure of
    the average with the intensity distribution of one pass. An average's shrunken tails would otherwise cost PSNR
    after the metrics' own-percentile normalisation (docs/validation_rule.md, "Three slice orientations averaged")."""
    values = mean[mask]
    restored = np.empty_like(values)
    restored[np.argsort(values, kind="stable")] = np.mean([np.sort(one[mask]) for one in passes], axis=0)
    output = np.zeros_like(mean)
    output[mask] = restored
    return output


def synthesise_on_canvas(generator: Generator, stack: np.ndarray, target: int, mask: np.ndarray, canvas: tuple[int, int, int],
                         mirror: bool, **options) -> np.ndarray:
    """One prediction of the axial slices, mirrored left-right if asked and each batch's brain box widened and shifted
    by `canvas` (`batch_box`), placed back on the study's grid. Other options as for `synthesise`."""
    if mirror:
        stack, mask = stack[..., ::-1], mask[..., ::-1]  # views: each batch is copied as the network reads it
    output = synthesise(generator, stack, target, mask, canvas=canvas, planes=1, **options)
    return np.ascontiguousarray(output[..., ::-1]) if mirror else output


def smooth_in_brain(volume: np.ndarray, mask: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """A Gaussian, sigma (across slices, in plane) in voxels, inside the brain only (normalised by the
    brain's own weight, so the edge of the brain is not darkened by the background).

    Two artefacts of a 2-D generator that no real volume has. Across slices: each slice is imputed on its
    own, so neighbouring slices differ more than those of a real volume (the noise of their inputs passes
    through independently) and a sagittal or coronal view flickers. In plane: the decoder's stride-2
    transposed convolutions leave a faint checkerboard at the scale of one or two voxels of the network's
    grid. A light smoothing removes both and, on the training subjects, raised brain SSIM
    (benchmarks/results/quality.md shows the imputation with and without it).
    """
    across, within = sigma
    sigmas = (across, within, within)
    weight = gaussian_filter(mask.astype(np.float32), sigmas)
    smoothed = gaussian_filter(np.where(mask, volume, 0.0).astype(np.float32), sigmas)
    return np.where(mask, smoothed / np.maximum(weight, 1e-6), 0.0).astype(np.float32)


def model_smoothing(model: Model, key: str, slice_spacing: float) -> tuple[float, float]:
    """The model's smoothing of contrast `key` (card "inference") in voxels of a study `slice_spacing` mm apart: across
    slices, given in mm so that thick-slice studies get less, and in plane, given in voxels of the network's grid."""
    across_mm, in_plane = model.smoothing(key)
    return across_mm / slice_spacing, in_plane


def synthesise_naive(generator: Generator, stack: np.ndarray, target: int, mask: np.ndarray) -> np.ndarray:
    """The reference the fast path is measured against: every full-size slice, one at a time, fp32,
    no skipping, no cropping. Same arguments and result as `synthesise`."""
    device = next(generator.parameters()).device
    count, height, width = stack.shape[0], *mask.shape[1:]
    pad_rows, pad_cols = _padding((height, width), generator.config.size_multiple)
    output = np.zeros(mask.shape, dtype=np.float32)
    with torch.inference_mode():
        for index in range(mask.shape[0]):
            image = network_batch(generator, stack, np.array([index]), target)
            image = torch.nn.functional.pad(image, (0, pad_cols, 0, pad_rows)).to(device)
            output[index] = generator(image, one_hot(target, count, 1, device))[0, 0, :height, :width].cpu().numpy()
    output[~mask] = 0.0
    return output


def network_batch(generator: Generator, stack: np.ndarray, chosen: np.ndarray, target: int) -> torch.Tensor:
    """The slices `chosen` of a (N, S, H, W) stack as `generator` reads them (with its neighbouring planes when it is
    2.5-D), every plane of contrast `target` zero-filled: (len(chosen), N x planes, H, W), a new array."""
    planes = generator.config.planes
    batch = torch.from_numpy(np.ascontiguousarray(slice_planes(stack, chosen, generator.config.context)))
    batch[:, target * planes : (target + 1) * planes] = 0.0
    return batch


def network_stack(study: PreparedStudy, contrasts: list[str]) -> np.ndarray:
    """The (N, S, H, W) array the network reads, in model order, absent contrasts zero."""
    return np.stack([study.images.get(k, np.zeros_like(study.mask, dtype=np.float32)) for k in contrasts])


def model_inputs(model: Model, study: PreparedStudy) -> np.ndarray:
    """`network_stack` of the study as the model was trained to read it: freed of coil shading first and in
    the BraSyn normalisation when its card says so (bias_field.corrected_study, brasyn_scale.brasyn_scaled_study).
    The study itself stays as acquired, for scoring."""
    if model.bias_corrected:
        study = corrected_study(study)
    if model.brasyn_scaled:
        study = brasyn_scaled_study(study)
    return network_stack(study, model.contrasts)


class ServedInputs:
    """A study's `model_inputs` for each model that serves one of its contrasts, made once per model: a card's companion
    may read the study in another intensity space than the model it stands beside. Call it with the serving model."""

    def __init__(self, study: PreparedStudy) -> None:
        self.study = study
        self._stacks: dict[int, np.ndarray] = {}

    def __call__(self, model: Model) -> np.ndarray:
        if id(model) not in self._stacks:
            self._stacks[id(model)] = model_inputs(model, self.study)
        return self._stacks[id(model)]

    def impute(self, model: Model, key: str, **options) -> tuple[Model, np.ndarray]:
        """`key` imputed from every other contrast as `impute` delivers that request: by the model that serves it
        (`Model.serving`). Returns the serving model and the volume; `options` go to `synthesise`."""
        server = model.serving([key], [k for k in model.contrasts if k != key])
        return server, self.imputed_by(server, key, **options)

    def imputed_by(self, model: Model, key: str, **options) -> np.ndarray:
        """`key` imputed from every other contrast by `model` itself, with its smoothing and intensity mapping."""
        fake = synthesise(model.generator, self(model), model.contrasts.index(key), self.study.mask,
                          smoothing=model_smoothing(model, key, self.study.slice_spacing), **options)
        return model_landmarks(model, key, fake, self.study.mask)
