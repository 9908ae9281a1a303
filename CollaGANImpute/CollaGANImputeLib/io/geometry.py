"""Grids in physical space: comparing, resampling onto a reference, and canonical axial orientation.

The network sees axial slices in one orientation whatever the file's voxel order. Every volume is
reoriented (a permutation and flips of axes, no interpolation) so that its array is [S, P, L]: index 0
runs inferior to superior, each slice has rows anterior to posterior and columns right to left, the
radiological view. The shared AURORA case is stored RAS and the others LPS; both arrive here alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"  # DICOM convention: index i points Left, j Posterior, k Superior


@dataclass(frozen=True)
class Grid:
    """Where an image's voxels lie, without its voxels: what the out-of-distribution checks read of each input
    as it was acquired, before it is resampled onto the reference grid."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]  # row-major 3x3; column i is the direction of index axis i

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetDirection()))


def describe_grid(image: sitk.Image) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:.3g}" for s in image.GetSpacing())
    return f"{size} voxels of {spacing} mm, {orientation_of(image)}"


def orientation_of(image: sitk.Image) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance * max(1.0, max(a.GetSpacing())))
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)
    )


def resample_onto(image: sitk.Image, reference: sitk.Image, *, nearest: bool = False) -> sitk.Image:
    """Resample `image` onto the reference grid in physical space; voxels outside `image` become 0."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def to_canonical_array(image: sitk.Image) -> np.ndarray:
    """The voxels as a float32 [S, P, L] array (a copy; `image` is not touched)."""
    oriented = sitk.DICOMOrient(image, CANONICAL)
    return sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False)


def from_canonical_array(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Inverse of `to_canonical_array` for an array on the reference grid: the image carries the
    reference's origin, spacing and direction exactly."""
    canonical_reference = sitk.DICOMOrient(reference, CANONICAL)
    if tuple(reversed(array.shape)) != canonical_reference.GetSize():
        raise ValueError(f"array shape {array.shape} does not match the reference grid {reference.GetSize()}")
    oriented = sitk.GetImageFromArray(np.ascontiguousarray(array))
    oriented.CopyInformation(canonical_reference)
    restored = sitk.DICOMOrient(oriented, orientation_of(reference))
    restored.CopyInformation(reference)  # same voxels; removes round-off in origin and direction
    return restored
