"""The pluggable segmenter interface (Python callable, module:function spec, command line), the checks on
what a segmenter returns, tumour regions from BraTS label conventions, Dice, and the built-in rules."""

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.preparation.regions import dice, enhancement_proxy, label_convention, proxy_regions, regions_from_labels
from CollaGANImputeLib.preparation.segmenters import (
    Segmenter,
    callable_segmenter,
    command_segmenter,
    load_segmenter,
    python_segmenter,
    threshold_labels,
    threshold_segmenter,
)
from conftest import assert_same_grid

SHAPE = (8, 10, 12)  # SimpleITK array order (z, y, x)


def grid_image(array: np.ndarray) -> sitk.Image:
    """An image on an oblique, anisotropic grid, so a lost geometry cannot go unnoticed."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((0.9, 1.1, 2.5))
    image.SetOrigin((-12.0, 30.5, 7.25))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return image


def ramp(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth background (z-scores within +-1.8, so no voxel of it passes a threshold by chance)."""
    return 1.0 + 0.1 * np.broadcast_to(np.linspace(0.0, 1.0, shape[-1]), shape).copy()


@pytest.fixture
def images() -> dict[str, sitk.Image]:
    """Four contrasts on one grid: FLAIR bright in a block (lesion), T1Gd bright in a smaller block."""
    base = {key: ramp(SHAPE) for key in ("t1", "t1gd", "t2", "flair")}
    base["flair"][2:6, 3:8, 4:10] = 3.0
    base["t1gd"][3:5, 4:6, 5:8] = 3.0
    return {key: grid_image(array) for key, array in base.items()}


def expected_labels(images: dict[str, sitk.Image]) -> np.ndarray:
    """What the fake segmenters below return: oedema where FLAIR > 2, enhancing where T1Gd > 2."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[sitk.GetArrayFromImage(images["flair"]) > 2] = 2
    labels[sitk.GetArrayFromImage(images["t1gd"]) > 2] = 3
    return labels


def fake_segmenter(images):
    labels = expected_labels(images)
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(images["flair"])
    return result


FAKE_MODULE = '''
import numpy as np
import SimpleITK as sitk


def segment(images):
    labels = np.zeros(sitk.GetArrayFromImage(images["flair"]).shape, dtype=np.uint8)
    labels[sitk.GetArrayFromImage(images["flair"]) > 2] = 2
    labels[sitk.GetArrayFromImage(images["t1gd"]) > 2] = 3
    return labels  # an array in SimpleITK order is accepted too


NOT_CALLABLE = 3
'''

FAKE_SCRIPT = '''
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

mode, flair_path, t1gd_path, output = sys.argv[1:5]
Path(sys.argv[5]).write_text(str(Path(flair_path).parent))  # where the inputs were, to check it is removed
flair, t1gd = sitk.ReadImage(flair_path), sitk.ReadImage(t1gd_path)
if mode == "fail":
    print("model weights not found", file=sys.stderr)
    sys.exit(3)
if mode == "silent":
    sys.exit(0)
labels = np.zeros(sitk.GetArrayFromImage(flair).shape, dtype=np.uint8)
labels[sitk.GetArrayFromImage(flair) > 2] = 2
labels[sitk.GetArrayFromImage(t1gd) > 2] = 3
result = sitk.GetImageFromArray(labels)
result.CopyInformation(flair)
if mode == "shifted":
    result.SetOrigin((0.0, 0.0, 0.0))
sitk.WriteImage(result, output)
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "fake segmenter.py"  # a space in the path: one argument all the same
    path.write_text(FAKE_SCRIPT)
    return path


def command(script, mode: str, seen) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode} {{flair}} {{t1gd}} {{output}} {shlex.quote(str(seen))}"


# ----- the three adapters ---------------------------------------------------------------------------
def test_python_callable_round_trips_on_the_input_grid(images):
    result = callable_segmenter(fake_segmenter)(images)
    assert_same_grid(result, images["t1"])
    assert result.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected_labels(images))


def test_file_spec_loads_the_function_and_an_array_result_gets_the_input_grid(images, tmp_path):
    module = tmp_path / "my_seg.py"
    # A dataclass under postponed annotations looks its module up in sys.modules while the file runs.
    module.write_text("from __future__ import annotations\nfrom dataclasses import dataclass\n\n\n@dataclass\n"
                      "class Settings:\n    level: float = 2.0\n" + FAKE_MODULE)
    segmenter = load_segmenter(f"{module}:segment")
    result = segmenter(images)
    assert_same_grid(result, images["t1"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected_labels(images))
    assert segmenter.reads is None  # what a Python function reads is not known


def test_module_spec_imports_from_the_path(images, tmp_path, monkeypatch):
    (tmp_path / "my_seg_package").mkdir()
    (tmp_path / "my_seg_package" / "__init__.py").write_text("")
    (tmp_path / "my_seg_package" / "rules.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = python_segmenter("my_seg_package.rules:segment")(images)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected_labels(images))


def test_command_line_round_trips_and_removes_its_temporary_inputs(images, script, tmp_path):
    seen = tmp_path / "seen.txt"
    segmenter = load_segmenter(command(script, "ok", seen))
    assert segmenter.reads == ("flair", "t1gd")
    result = segmenter(images)
    assert_same_grid(result, images["t1"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected_labels(images))
    folder = Path(seen.read_text())
    assert folder.name.startswith("collagan-segment-") and not folder.exists()


@pytest.mark.parametrize("mode, message", [
    ("fail", "failed with exit code 3: model weights not found"),
    ("silent", "exited without writing its label map"),
    ("shifted", "label map on another grid"),
])
def test_command_line_failures_name_the_command_and_the_problem(images, script, tmp_path, mode, message):
    template = command(script, mode, tmp_path / "seen.txt")
    with pytest.raises(InputError, match=message) as raised:
        command_segmenter(template)(images)
    assert "fake segmenter.py" in str(raised.value)


def test_command_line_that_does_not_exist(images):
    with pytest.raises(InputError, match="program 'no-such-segmenter-xyz' not found"):
        load_segmenter("no-such-segmenter-xyz {flair} {output}")(images)


@pytest.mark.parametrize("spec, message", [
    ("nonsense", "is none of"),
    ("mytool {flair} -o labels.nii.gz", "is none of"),  # no {output}: taken for a Python spec, which it is not
    ("no_such_module_xyz:segment", "cannot import 'no_such_module_xyz'"),
    ("/no/such/file.py:segment", "no Python file"),
    ("tool {t1gd {output}", "braces"),
    ("mytool '{t1} -o {output}", "cannot be split into words: No closing quotation"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        load_segmenter(spec)


def test_spec_naming_a_missing_or_uncallable_attribute(tmp_path):
    module = tmp_path / "my_seg.py"
    module.write_text(FAKE_MODULE)
    with pytest.raises(InputError, match="has no attribute 'segmnet'"):
        load_segmenter(f"{module}:segmnet")
    with pytest.raises(InputError, match="'NOT_CALLABLE' .* is not callable"):
        load_segmenter(f"{module}:NOT_CALLABLE")


def test_spec_whose_import_fails(tmp_path):
    module = tmp_path / "broken.py"
    module.write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(InputError, match="cannot import .*RuntimeError: no GPU here"):
        load_segmenter(f"{module}:segment")


def test_placeholder_naming_no_contrast_of_the_study(images):
    with pytest.raises(InputError, match=r"placeholder\(s\) \{t1ce\} name no contrast"):
        load_segmenter("tool {t1ce} {output}")(images)


# ----- what a segmenter returns ---------------------------------------------------------------------
def returning(value):
    return callable_segmenter(lambda images: value, "fake")


def test_results_that_are_not_label_maps_on_the_grid_are_refused(images):
    wrong_grid = sitk.Image(12, 10, 7, sitk.sitkUInt8)
    with pytest.raises(InputError, match="segmenter 'fake' returned a label map on another grid"):
        returning(wrong_grid)(images)
    with pytest.raises(InputError, match=r"returned an array of shape \(10, 12\)"):
        returning(np.zeros((10, 12), dtype=np.uint8))(images)
    with pytest.raises(InputError, match="returned list"):
        returning([1, 2])(images)
    with pytest.raises(InputError, match=r"from segmenter 'fake' holds label\(s\) 5"):
        returning(np.full(SHAPE, 5, dtype=np.uint8))(images)
    with pytest.raises(InputError, match="non-integer"):
        returning(np.full(SHAPE, 0.5, dtype=np.float32))(images)


def test_a_boolean_mask_is_read_as_labels_0_and_1(images):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:4, 2:4, 2:4] = True
    np.testing.assert_array_equal(sitk.GetArrayFromImage(returning(mask)(images)), mask.astype(np.uint8))


def test_an_exception_in_the_users_function_names_the_segmenter(images):
    def broken(images):
        raise KeyError("t1ce")

    with pytest.raises(InputError, match="segmenter 'broken' failed: KeyError"):
        Segmenter("'broken'", broken)(images)


# ----- regions and Dice -----------------------------------------------------------------------------
def test_brats_2023_labels():
    labels = np.array([0, 1, 2, 3, 3, 2])
    regions = regions_from_labels(labels, "'seg.nii.gz'")
    assert "BraTS 2023" in regions.definition
    np.testing.assert_array_equal(regions.masks["wt"], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(regions.masks["tc"], [0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(regions.masks["et"], [0, 0, 0, 1, 1, 0])


def test_brats_2015_to_2021_labels_are_recognised_by_label_4():
    labels = np.array([0, 1, 2, 4, 4, 3])  # 3: non-enhancing core, only before 2017
    regions = regions_from_labels(labels, "'seg.nii.gz'")
    assert "BraTS 2015-2021" in regions.definition
    np.testing.assert_array_equal(regions.masks["tc"], [0, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(regions.masks["et"], [0, 0, 0, 1, 1, 0])
    # without any enhancing voxel both conventions give the same regions
    assert label_convention(np.array([0, 1, 2]), "x").name == "brats2023"


def test_unknown_labels_and_conventions_name_the_file():
    with pytest.raises(InputError, match=r"label map '/data/seg.nii.gz' holds label\(s\) 5, 7"):
        regions_from_labels(np.array([0, 5, 2, 7]), "'/data/seg.nii.gz'")
    with pytest.raises(InputError, match=r"label\(s\) 4, unknown in BraTS 2023"):
        regions_from_labels(np.array([0, 4]), "'seg.nii.gz'", "brats2023")
    with pytest.raises(InputError, match="unknown label convention"):
        regions_from_labels(np.array([0, 1]), "'seg.nii.gz'", "brats2024")


def test_dice_against_hand_computed_cases():
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[0:4] = True  # 4 voxels
    b[1:7] = True  # 6 voxels, 3 shared with a
    assert dice(a, b) == pytest.approx(2 * 3 / (4 + 6))
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros(5, bool), np.zeros(5, bool)) == 1.0  # both empty: agreeing that the region is absent
    assert dice(np.zeros(5, bool), np.ones(5, bool)) == 0.0


def test_enhancement_proxy_marks_what_enhances_beyond_the_margin():
    brain = np.ones((4, 4, 4), bool)
    t1 = np.ones((4, 4, 4))
    t1[0] = 2.0  # some contrast in T1 alone
    t1gd = t1.copy()
    t1gd[2, 1, 1] = 30.0  # one enhancing voxel
    proxy = enhancement_proxy(t1gd, t1, brain)
    assert proxy.sum() == 1 and proxy[2, 1, 1]
    assert "z(T1Gd) - z(T1) > 2.5" in proxy_regions(t1gd, t1, brain).definition


# ----- the built-in demonstration segmenter ---------------------------------------------------------
def test_threshold_rules_on_a_ring_enhancing_lesion():
    shape = (12, 40, 40)
    brain = np.ones(shape, bool)
    t1, t1gd, flair = ramp(shape), ramp(shape), ramp(shape)
    flair[3:9, 10:30, 10:30] = 3.0  # the lesion with its oedema
    flair[3:9, 34:38, 2:6] = 3.0  # a smaller, separate hyperintensity: not the largest region
    ring = np.zeros(shape, bool)
    ring[4:8, 14:26, 14:26] = True
    ring[4:8, 16:24, 16:24] = False  # enhancing rim around a necrotic centre
    t1gd[ring] = 2.0
    t1gd[0, 0, 0:4] = 4.0  # enhancing voxels far from the lesion: a vessel, not tumour
    labels = threshold_labels(t1, t1gd, flair, brain)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(labels == 3, ring)
    assert (labels[4:8, 16:24, 16:24] == 1).all()  # enclosed by the rim: core
    assert (labels[3:9, 10:30, 10:30] > 0).all() and (labels[3:9, 34:38, 2:6] == 0).all()
    assert (labels[0, 0, 0:4] == 0).all()


def test_threshold_segmenter_through_the_interface(images):
    segmenter = threshold_segmenter()
    assert "not a clinical tool" in segmenter.name and segmenter.reads == ("t1", "t1gd", "flair")
    result = segmenter(images)
    assert_same_grid(result, images["t1"])
    labels = sitk.GetArrayFromImage(result)
    flair_block = sitk.GetArrayFromImage(images["flair"]) > 2
    assert (labels[flair_block] > 0).all() and not labels[~flair_block].any()
    with pytest.raises(InputError, match="threshold segmenter needs T1, T1Gd and FLAIR; the study has no FLAIR"):
        segmenter({k: v for k, v in images.items() if k != "flair"})
