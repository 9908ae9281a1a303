"""Reading, checking and writing 3-D volumes with SimpleITK (NIfTI, NRRD, MHA, DICOM series folders)."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import WRITABLE_SUFFIXES, display_name
from ..core.errors import InputError
from .atomic import atomic_paths
from .volume_files import MAX_VOXELS, check_declared_size, require_spacing


def read_volume(path: str | Path, contrast: str | None = None) -> sitk.Image:
    """Read a volume file or a DICOM series folder as a float32 image. Its header is checked against what the file
    holds before any voxel is read (volume_files.py), the image by `check_volume` after."""
    path = Path(path)
    label = f"{display_name(contrast)}: " if contrast else ""
    what = f"{label}'{path}'"
    require_readable(path, what)
    try:
        if path.is_dir():
            image = _read_dicom_series(path, label)
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            check_declared_size(reader, path, what)
            image = reader.Execute()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reader error"
        raise InputError(f"{label}cannot read '{path}': {first_line}") from None
    check_volume(image, what)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_finite(path, what)
    return sitk.Cast(image, sitk.sitkFloat32)


def require_readable(path: Path, what: str) -> None:
    """Say what keeps a path from being read (absent, a dangling link or a loop of links, no permission) in the
    words of the problem, rather than the reader's 'file does not exist' for all of them."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{what} is a loop of symbolic links") from None
        if error.errno == errno.ENOENT and path.is_symlink():
            raise InputError(f"{what} is a symbolic link to '{os.readlink(path)}', which does not exist") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(f"{what} does not exist") from None
        raise InputError(f"{what} cannot be read: {error.strerror}") from None
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(f"{what} cannot be read: permission denied")


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
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    first.ReadImageInformation()
    rows_columns = first.GetSize()[0] * first.GetSize()[1]
    if rows_columns * len(files) > MAX_VOXELS:
        raise InputError(f"{label}'{folder}' declares {len(files)} slices of {first.GetSize()[0]}x{first.GetSize()[1]} voxels, "
                         f"more than the {MAX_VOXELS} (512^3) a volume may have")
    reader.SetFileNames(files)
    return reader.Execute()


def check_volume(image: sitk.Image, what: str) -> None:
    """Reject what the network cannot use: not 3-D scalar, NaN/Inf voxels, all zero."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar volume")
    if image.GetDimension() != 3:
        raise InputError(f"{what} is {image.GetDimension()}-D; expected a 3-D volume")
    if min(image.GetSize()) < 1:
        raise InputError(f"{what} is empty (size {image.GetSize()})")
    require_spacing(image.GetSpacing(), what)
    if not np.isfinite(image.GetOrigin()).all():
        raise InputError(f"{what} has origin {image.GetOrigin()}; expected finite coordinates")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not (np.isfinite(direction).all() and np.allclose(direction.T @ direction, np.eye(3), atol=1e-3)):
        raise InputError(f"{what} has a direction matrix whose axes are not orthogonal unit vectors (a sheared or "
                         "scaled grid); resample it onto an orthogonal grid first")
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
