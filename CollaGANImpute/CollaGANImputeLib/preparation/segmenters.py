"""Pluggable tumour segmenters: whatever the user trusts (a Python function or a command line) turns a
study's contrasts into a BraTS label map, so that imputed contrasts can be judged by what a
segmentation loses when it reads them instead of real ones.

The interface: a segmenter is called with a mapping contrast key -> SimpleITK image, every image on one
grid (the study's reference grid, float32, in brain standard deviations: each volume divided by the
standard deviation of its brain voxels, 0 outside the brain, real and imputed alike). It returns a label
map on that same grid with BraTS labels (regions.py: 2023's 1/2/3 or 2015-2021's 1/2/4), as a SimpleITK
image or as an array in SimpleITK's (z, y, x) order. SimpleITK images are what both a command line
(through files) and a Python function can use without knowing this package's canonical orientation.

`load_segmenter` turns a user's choice into a `Segmenter`:
- "threshold": the crude built-in rule below;
- a command line holding {output} and contrast placeholders ({t1} {t1gd} {t2} {flair}), run without a shell;
- "package.module:function" or "/path/to/file.py:function": the user's own Python code, imported on
  request (it runs with this process's rights, by the user's choice; nothing is ever unpickled).
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex
import string
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.contrasts import display_name
from ..core.errors import Cancelled, InputError
from ..io.geometry import describe_grid, from_canonical_array, same_grid, to_canonical_array
from .regions import enhancement_proxy, label_convention, zscore

SegmentFunction = Callable[[Mapping[str, sitk.Image]], "sitk.Image | np.ndarray"]

THRESHOLD = "threshold"
FLAIR_Z = 2.0  # FLAIR hyperintensity: z over the brain above this is taken for tumour or oedema
NEAR_VOXELS = 3  # enhancement counts as tumour only this close (in voxels) to the FLAIR lesion
THRESHOLD_READS = ("t1", "t1gd", "flair")  # T2 is not used: the rules need no T2 to find the lesion


@dataclass(frozen=True)
class Segmenter:
    """A named segmentation function whose output is checked: same grid as the input, BraTS labels.

    `reads` lists the contrasts the function looks at, when known (a command line's placeholders, the
    built-in rules); replacing any other contrast cannot change its output, so it is not run again.
    """

    name: str
    function: SegmentFunction
    reads: tuple[str, ...] | None = None

    def __call__(self, images: Mapping[str, sitk.Image]) -> sitk.Image:
        reference = next(iter(images.values()))
        try:
            result = self.function(images)
        except (InputError, Cancelled):
            raise
        except Exception as error:  # the user's code: any failure is reported as theirs, with its cause
            raise InputError(f"segmenter {self.name} failed: {type(error).__name__}: {error}") from error
        labels = self._on_grid(result, reference)
        label_convention(sitk.GetArrayViewFromImage(labels), f"from segmenter {self.name}")
        labels = sitk.Cast(labels, sitk.sitkUInt8)
        labels.CopyInformation(reference)  # exactly the input grid (a file's geometry is rounded to float32)
        return labels

    def _on_grid(self, result: object, reference: sitk.Image) -> sitk.Image:
        if isinstance(result, np.ndarray):
            expected = tuple(reversed(reference.GetSize()))
            if result.shape != expected:
                raise InputError(f"segmenter {self.name} returned an array of shape {result.shape}; expected {expected} "
                                 "(SimpleITK's z, y, x order of the input grid)")
            image = sitk.GetImageFromArray(np.ascontiguousarray(result, dtype=np.float32))  # bool and int64 too
            image.CopyInformation(reference)
            return image
        if not isinstance(result, sitk.Image):
            raise InputError(f"segmenter {self.name} returned {type(result).__name__}; expected a SimpleITK image or a numpy array")
        if result.GetDimension() != 3 or result.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"segmenter {self.name} returned a {result.GetDimension()}-D image with "
                             f"{result.GetNumberOfComponentsPerPixel()} components; expected a 3-D label map")
        if not same_grid(result, reference):
            raise InputError(f"segmenter {self.name} returned a label map on another grid ({describe_grid(result)}) "
                             f"than its input ({describe_grid(reference)})")
        return result


def callable_segmenter(function: SegmentFunction, name: str | None = None) -> Segmenter:
    """A Python function (e.g. wrapping the user's nnU-Net predictor) as a segmenter."""
    return Segmenter(f"'{name or getattr(function, '__qualname__', repr(function))}'", function)


def python_segmenter(spec: str) -> Segmenter:
    """'package.module:function' or 'path/to/file.py:function', imported now (the user's own code)."""
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute:
        raise InputError(f"segmenter '{spec}' is none of: 'threshold', a command line with {{output}}, "
                         "'package.module:function', 'path/to/file.py:function'")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise InputError(f"segmenter '{spec}': no Python file '{path}'")
            loader_spec = importlib.util.spec_from_file_location(f"collagan_user_segmenter_{path.stem}", path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[loader_spec.name] = module  # its own code may look itself up (dataclasses do)
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[loader_spec.name]
                raise
        else:
            module = importlib.import_module(where)
    except InputError:
        raise
    except Exception as error:  # importing the user's code can fail in any way; say which and why
        raise InputError(f"segmenter '{spec}': cannot import '{where}': {type(error).__name__}: {error}") from error
    function = getattr(module, attribute, None)
    if function is None:
        raise InputError(f"segmenter '{spec}': '{where}' has no attribute '{attribute}'")
    if not callable(function):
        raise InputError(f"segmenter '{spec}': '{attribute}' in '{where}' is not callable")
    return Segmenter(f"'{spec}'", function)


def command_segmenter(template: str, timeout: float | None = None) -> Segmenter:
    """A command line run once per segmentation, e.g. 'mytool --t1c {t1gd} --flair {flair} -o {output}'.

    The template is split like a shell would (shlex) and then each word's placeholders are filled, so
    paths with spaces stay one argument and nothing is interpreted by a shell. The contrasts it names are
    written as NIfTI files into a temporary folder, removed afterwards; the command must write the label
    map to {output} (a .nii.gz path), on the grid of its inputs. Write literal braces as {{ and }}.
    """
    try:
        words = shlex.split(template)
    except ValueError as error:  # an unbalanced quote, say
        raise InputError(f"segmenter command '{template}' cannot be split into words: {error}") from None
    if not words:
        raise InputError("the segmenter command line is empty")
    try:
        fields = {field for word in words for _, field, _, _ in string.Formatter().parse(word) if field is not None}
    except ValueError as error:
        raise InputError(f"segmenter command '{template}': {error} (write literal braces as {{{{ and }}}})") from None
    if "output" not in fields:
        raise InputError(f"segmenter command '{template}' has no {{output}} placeholder for the label map it writes")
    if "" in fields or any(not f.isidentifier() for f in fields):
        raise InputError(f"segmenter command '{template}': placeholders must be contrast keys or output, like {{t1gd}}")
    name = f"command '{template}'"

    def run(images: Mapping[str, sitk.Image]) -> sitk.Image:
        unknown = sorted(fields - set(images) - {"output"})
        if unknown:
            raise InputError(f"segmenter {name}: placeholder(s) {', '.join('{' + f + '}' for f in unknown)} name no contrast "
                             f"of the study (it has {', '.join(images)})")
        with tempfile.TemporaryDirectory(prefix="collagan-segment-") as folder:
            paths = {"output": str(Path(folder) / "labels.nii.gz")}
            for key in fields - {"output"}:
                paths[key] = str(Path(folder) / f"{key}.nii")
                sitk.WriteImage(images[key], paths[key])
            arguments = [word.format(**paths) for word in words]
            try:
                completed = subprocess.run(arguments, capture_output=True, text=True, timeout=timeout, check=False)
            except FileNotFoundError:
                raise InputError(f"segmenter {name}: program '{arguments[0]}' not found") from None
            except subprocess.TimeoutExpired:
                raise InputError(f"segmenter {name}: still running after {timeout} s; stopped") from None
            if completed.returncode != 0:
                said = (completed.stderr.strip() or completed.stdout.strip() or "no output").splitlines()[-1]
                raise InputError(f"segmenter {name} failed with exit code {completed.returncode}: {said}")
            if not Path(paths["output"]).is_file():
                raise InputError(f"segmenter {name} exited without writing its label map to {{output}}")
            try:
                return sitk.ReadImage(paths["output"])
            except RuntimeError as error:
                raise InputError(f"segmenter {name}: cannot read the label map it wrote: {str(error).strip().splitlines()[-1]}") from None

    return Segmenter(name, run, tuple(sorted(fields - {"output"})))


def threshold_labels(t1: np.ndarray, t1gd: np.ndarray, flair: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """A crude rule-based BraTS 2023 label map from canonical arrays [S, P, L].

    Whole tumour: the largest 3-D connected region of FLAIR hyperintensity (z > FLAIR_Z over the brain),
    plus the core below. Enhancing tumour (3): the enhancement proxy (regions.py) within NEAR_VOXELS of
    that region, which keeps vessels elsewhere out. Tumour core: enhancing tumour plus what it encloses
    in each axial slice (the necrotic centre of a ring, label 1). Oedema (2): the rest of the whole tumour.
    `brain` is where any of the three inputs is non-zero.
    """
    hyper = brain & (zscore(flair, brain) > FLAIR_Z)
    components, count = ndimage.label(hyper)
    labels = np.zeros(brain.shape, dtype=np.uint8)
    if count == 0:
        return labels
    lesion = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    near = ndimage.binary_dilation(lesion, iterations=NEAR_VOXELS) & brain
    enhancing = enhancement_proxy(t1gd, t1, brain) & near
    core = np.stack([ndimage.binary_fill_holes(plane) for plane in enhancing]) & brain
    labels[lesion | core] = 2
    labels[core] = 1
    labels[enhancing] = 3
    return labels


def _threshold(images: Mapping[str, sitk.Image]) -> sitk.Image:
    absent = [display_name(k) for k in THRESHOLD_READS if k not in images]
    if absent:
        raise InputError(f"the threshold segmenter needs T1, T1Gd and FLAIR; the study has no {', '.join(absent)}")
    arrays = {k: to_canonical_array(images[k]) for k in THRESHOLD_READS}
    brain = np.logical_or.reduce([array > 0 for array in arrays.values()])
    return from_canonical_array(threshold_labels(arrays["t1"], arrays["t1gd"], arrays["flair"], brain), images["t1"])


def threshold_segmenter() -> Segmenter:
    """The built-in demonstration segmenter (`threshold_labels`): a few thresholds, no learning.

    It exists so that the Dice pipeline can run where no trained segmenter is available (the shared
    subjects, offline). It is NOT a clinical or research-grade segmentation: its regions follow
    intensity rules, and its enhancing tumour is only the enhancement proxy near the FLAIR lesion.
    """
    return Segmenter(f"'{THRESHOLD}' (crude built-in rules: FLAIR z > {FLAIR_Z}, enhancement proxy; a demonstration, not a clinical tool)",
                     _threshold, THRESHOLD_READS)


def load_segmenter(spec: str) -> Segmenter:
    """'threshold', a command line containing {output}, or a Python 'module:function' / 'file.py:function'."""
    if spec.strip() == THRESHOLD:
        return threshold_segmenter()
    if "{output}" in spec:
        return command_segmenter(spec)
    return python_segmenter(spec)
