"""Turning a study's volumes into what the network sees: one grid, canonical axial slices, a brain
mask, and METHOD.md's normalisation (each volume divided by its standard deviation over the brain)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..io.geometry import CANONICAL, Grid, describe_grid, from_canonical_array, resample_onto, same_grid, to_canonical_array
from ..io.volumes import check_volume, read_volume

VolumeSource = Union[str, Path, sitk.Image]  # Union: Slicer 5.6 runs Python 3.9


@dataclass
class PreparedStudy:
    """A study on one grid. Arrays are canonical [S, P, L] (see geometry.py), float32, normalised."""

    reference: sitk.Image
    reference_contrast: str
    images: dict[str, np.ndarray]
    mask: np.ndarray
    brain_std: dict[str, float]
    notes: list[str] = field(default_factory=list)
    input_grids: dict[str, Grid] = field(default_factory=dict)  # each input's grid as given (ood_checks reads them)

    @property
    def canonical_spacing(self) -> tuple[float, float, float]:
        """Millimetres between voxels of the canonical arrays, in SimpleITK's (x, y, z) order (z: axial slices)."""
        return tuple(float(v) for v in sitk.DICOMOrient(self.reference, CANONICAL).GetSpacing())

    @property
    def slice_spacing(self) -> float:
        """Millimetres between neighbouring canonical (axial) slices."""
        return self.canonical_spacing[2]

    def to_reference_image(self, canonical: np.ndarray) -> sitk.Image:
        """A canonical array back on the reference grid, with the reference's exact geometry."""
        return from_canonical_array(canonical.astype(np.float32, copy=False), self.reference)


def load_volume(source: VolumeSource, contrast: str | None) -> sitk.Image:
    """A file path or an in-memory image (from Slicer, say), checked the same way."""
    if isinstance(source, sitk.Image):
        check_volume(source, f"{display_name(contrast)} volume" if contrast else "volume")
        return sitk.Cast(source, sitk.sitkFloat32)
    return read_volume(source, contrast)


def _describe(contrast: str, source: VolumeSource) -> str:
    name = display_name(contrast)
    return f"{name} '{source}'" if not isinstance(source, sitk.Image) else f"{name} volume"


def prepare_study(
    volumes: Mapping[str, VolumeSource],
    order: Sequence[str],
    *,
    reference: str | None = None,
    mask: VolumeSource | None = None,
    strict: bool = False,
) -> PreparedStudy:
    """Read, resample onto the reference grid, reorient, mask and normalise every given contrast.

    `order` is the model's contrast order; the reference grid defaults to the first given contrast in it.
    Inputs on another grid are resampled linearly in physical space, and a note says so. One volume given for
    two contrasts is refused; an input that covers only part of the reference gets a note, or is refused with
    `strict`.
    """
    unknown = [key for key in volumes if key not in order]
    if unknown:
        raise InputError(f"{', '.join(display_name(k) for k in unknown)}: not a contrast of this model ({', '.join(order)})")
    if not volumes:
        raise InputError("no input volumes were given")
    available = [key for key in order if key in volumes]
    reference_key = reference or available[0]
    if reference_key not in volumes:
        raise InputError(f"reference {display_name(reference_key)}: no volume was given for it")

    images = {key: load_volume(volumes[key], key) for key in available}
    reference_image = images[reference_key]
    _refuse_same_voxels(images, volumes)
    notes: list[str] = []
    doubts: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for key in available:
        image = images[key]
        if not same_grid(image, reference_image):
            doubts += _coverage_doubt(image, reference_image, _describe(key, volumes[key]), display_name(reference_key))
            notes.append(
                f"{display_name(key)} ({describe_grid(image)}) was resampled onto the {display_name(reference_key)} grid "
                f"({describe_grid(reference_image)})"
            )
            image = resample_onto(image, reference_image)
            if not np.any(sitk.GetArrayViewFromImage(image)):
                raise InputError(
                    f"{_describe(key, volumes[key])} does not overlap the reference {_describe(reference_key, volumes[reference_key])} in physical space"
                )
        # Negative values in skull-stripped data are interpolation artefacts; intensities are non-negative.
        arrays[key] = np.clip(to_canonical_array(image), 0.0, None)

    brain = _brain_mask(arrays, mask, reference_image)
    brain_std: dict[str, float] = {}
    for key, array in arrays.items():
        brain_std[key] = normalise_in_brain(array, brain)
        if brain_std[key] <= 0:
            raise InputError(f"{_describe(key, volumes[key])} is constant inside the brain mask; it cannot be normalised")
    study = PreparedStudy(reference_image, reference_key, arrays, brain, brain_std, notes,
                          {key: Grid.of(image) for key, image in images.items()})
    if strict and doubts:
        raise InputError(f"{doubts[0]} (refused: --strict)")
    notes += doubts
    return study


# Below this share of the reference's non-zero voxels inside an input's grid, the imputation of the rest is made
# without that input (zero-filled) and says so.
MIN_COVERAGE = 0.95


def _coverage_doubt(image: sitk.Image, reference: sitk.Image, what: str, reference_name: str) -> list[str]:
    """A note when `image`'s grid holds less than MIN_COVERAGE of the reference's non-zero voxels, naming the
    axial slices it misses entirely."""
    inside = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    inside.CopyInformation(image)
    covered = to_canonical_array(resample_onto(inside, reference, nearest=True)) > 0
    head = to_canonical_array(reference) != 0
    share = float(covered[head].mean()) if head.any() else 1.0
    if share >= MIN_COVERAGE:
        return []
    lacking = [int(k) for k in np.nonzero(head.any(axis=(1, 2)) & ~covered.any(axis=(1, 2)))[0]]
    slices = ("" if not lacking else f"; axial slice {lacking[0]} of {head.shape[0]} lacks it entirely" if len(lacking) == 1
              else f"; axial slices {lacking[0]}-{lacking[-1]} of {head.shape[0]} lack it entirely")
    return [f"{what} covers only {100 * share:.0f} % of the {reference_name} volume's non-zero voxels{slices}: where it does not, "
            "the imputation was made without it"]


def _refuse_same_voxels(images: Mapping[str, sitk.Image], volumes: Mapping[str, VolumeSource]) -> None:
    """One volume given for two contrasts (the same file twice, or a copy) can only give a wrong imputation."""
    for (first, a), (second, b) in itertools.combinations(images.items(), 2):
        if same_grid(a, b) and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)):
            raise InputError(f"{_describe(first, volumes[first])} and {_describe(second, volumes[second])} hold the same voxels: "
                             "one volume was given for two contrasts")


def normalise_in_brain(array: np.ndarray, brain: np.ndarray) -> float:
    """METHOD.md's normalisation, in place: divide by the standard deviation over the brain, zero
    outside it. Returns the standard deviation (0 leaves the array unscaled)."""
    std = float(array[brain].std()) if brain.any() else 0.0
    if std > 0:
        array /= std
    array[~brain] = 0.0
    return std


def _brain_mask(arrays: Mapping[str, np.ndarray], mask: VolumeSource | None, reference: sitk.Image) -> np.ndarray:
    """The user's mask on the reference grid, or the voxels non-zero in any input."""
    if mask is None:
        return np.logical_or.reduce([a > 0 for a in arrays.values()])
    image = load_volume(mask, "brain mask")  # named in every message as a contrast would be
    if not same_grid(image, reference):
        image = resample_onto(image, reference, nearest=True)
    brain = to_canonical_array(image) > 0
    if not brain.any():
        where = "" if isinstance(mask, sitk.Image) else f" '{mask}'"
        raise InputError(f"the brain mask{where} is empty on the reference grid")
    return brain


def brain_slices(mask: np.ndarray, min_voxels: int = 1) -> np.ndarray:
    """Indices of axial slices that hold at least `min_voxels` brain voxels."""
    return np.nonzero(mask.reshape(mask.shape[0], -1).sum(axis=1) >= min_voxels)[0]


def slice_planes(stack: np.ndarray, indices: np.ndarray, context: int = 0) -> np.ndarray:
    """The slices `indices` of a (N, S, H, W) stack as the generator reads them: (len, N x planes, H, W) in the layout
    of core.planes, each slice with its `context` neighbours on either side. Past the volume's first and last slice
    the edge slice is repeated."""
    rows = np.clip(np.asarray(indices)[:, None] + np.arange(-context, context + 1), 0, stack.shape[1] - 1)
    return stack[:, rows].transpose(1, 0, 2, 3, 4).reshape(len(rows), -1, *stack.shape[2:])


def brain_extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """First and last row, first and last column of the brain in any slice of a canonical mask."""
    plane = mask.any(axis=0)
    rows, cols = np.nonzero(plane.any(axis=1))[0], np.nonzero(plane.any(axis=0))[0]
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def padded_bounds(mask: np.ndarray, multiple: int) -> tuple[slice, slice, tuple[int, int]]:
    """In-plane crop of the brain's bounding box, widened to multiples of `multiple`.

    Returns row and column slices into the canonical volume plus the zero padding (rows, cols) still
    needed where the widened box runs past the image edge.
    """
    bounds = []
    padding = []
    for (first, last), size in zip(brain_extent(mask), mask.shape[1:]):
        start, stop = first, last + 1
        length = -(-(stop - start) // multiple) * multiple
        extra = length - (stop - start)
        start = max(0, start - extra // 2)
        stop = min(size, start + length)
        start = max(0, stop - length)
        bounds.append(slice(start, stop))
        padding.append(length - (stop - start))
    return bounds[0], bounds[1], (padding[0], padding[1])
