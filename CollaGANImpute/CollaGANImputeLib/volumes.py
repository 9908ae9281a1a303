"""Reading, checking and writing 3-D volumes with SimpleITK (NIfTI, NRRD, MHA, DICOM series folders)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_paths
from .contrasts import WRITABLE_SUFFIXES, display_name
from .errors import InputError


def read_volume(path: str | Path, contrast: str | None = None) -> sitk.Image:
    """Read a volume file or a DICOM series folder as a float32 image, checked by `check_volume`."""
    path = Path(path)
    label = f"{display_name(contrast)}: " if contrast else ""
    if not path.exists():
        raise InputError(f"{label}'{path}' does not exist")
    try:
        if path.is_dir():
            image = _read_dicom_series(path, label)
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reader error"
        raise InputError(f"{label}cannot read '{path}': {first_line}") from None
    check_volume(image, f"{label}'{path}'")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_finite(path, f"{label}'{path}'")
    return sitk.Cast(image, sitk.sitkFloat32)


def _check_nifti_finite(path: Path, what: str) -> None:
    """ITK's NIfTI reader turns NaN and Inf into 0 without a word; look at the stored values instead."""
    import nibabel

    stored = nibabel.load(str(path))
    if np.issubdtype(stored.get_data_dtype(), np.floating):
        _require_finite(np.asanyarray(stored.dataobj), what)


def _require_finite(values: np.ndarray, what: str) -> None:
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise InputError(f"{what} has {int(np.count_nonzero(~np.isfinite(values)))} NaN or infinite voxels")


def _read_dicom_series(folder: Path, label: str) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{label}'{folder}' holds no DICOM series")
    if len(series) > 1:
        raise InputError(f"{label}'{folder}' holds {len(series)} DICOM series; give the folder of one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def check_volume(image: sitk.Image, what: str) -> None:
    """Reject what the network cannot use: not 3-D scalar, NaN/Inf voxels, all zero."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar volume")
    if image.GetDimension() != 3:
        raise InputError(f"{what} is {image.GetDimension()}-D; expected a 3-D volume")
    if min(image.GetSize()) < 1:
        raise InputError(f"{what} is empty (size {image.GetSize()})")
    array = sitk.GetArrayViewFromImage(image)
    _require_finite(array, what)
    if not np.any(array):
        raise InputError(f"{what} is all zero")


def write_volume(image: sitk.Image, path: str | Path) -> Path:
    """Write atomically: the destination holds either the whole volume or what it held before."""
    return write_volumes({Path(path): image})[0]


def write_volumes(images: Mapping[Path, sitk.Image]) -> list[Path]:
    """Write volumes that belong together (imputations and their reliability maps) so that all appear at
    once or none does. Formats with a separate voxel file (.mhd, .nhdr) are refused: only their header
    could be renamed into place."""
    paths = [Path(p) for p in images]
    for path in paths:
        if not path.name.lower().endswith(WRITABLE_SUFFIXES):
            raise InputError(f"output '{path}' must end in one of {', '.join(WRITABLE_SUFFIXES)} "
                             "(formats that keep the voxels in the same file, so the write can be atomic)")
    with atomic_paths(*paths) as temps:
        for temp, image in zip(temps, images.values()):
            sitk.WriteImage(image, str(temp), useCompression=True)
    return paths
