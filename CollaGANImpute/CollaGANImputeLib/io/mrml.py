"""The one adapter between Slicer volume nodes and SimpleITK images.

Slicer keeps geometry as an IJK-to-RAS matrix and voxels as a [k, j, i] array; ITK uses LPS physical
space. Converting means negating the first two rows of the geometry, nothing else, so an image made
from a node and a node made from that image carry the same voxels on the same grid. `slicer` is
imported inside the functions only: the rest of the engine never needs it, and these functions work
with Slicer's MRML libraries alone (no application), which is how they are tested.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError

# RAS <-> LPS: negate x and y. The matrix is its own inverse.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _node_label(node) -> str:
    return f"volume '{node.GetName()}'"


def ijk_to_ras(node) -> np.ndarray:
    """The node's IJK-to-RAS matrix in world coordinates (a linear parent transform applied)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    geometry = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    transform_node = node.GetParentTransformNode()
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise InputError(f"{_node_label(node)} is under a non-linear transform; harden it first")
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        geometry = np.array([[to_world.GetElement(r, c) for c in range(4)] for r in range(4)]) @ geometry
    return geometry


def image_from_node(node) -> sitk.Image:
    """A copy of a scalar volume node as a SimpleITK image on exactly the node's (world) grid.

    The node is only read. Raises InputError naming the node when it holds no voxels or is not scalar.
    """
    import slicer

    if node is None:
        raise InputError("no volume node was given")
    if node.GetImageData() is None:
        raise InputError(f"{_node_label(node)} holds no image data")
    array = slicer.util.arrayFromVolume(node)
    if array.ndim != 3:
        components = array.shape[-1] if array.ndim == 4 else "several"
        raise InputError(f"{_node_label(node)} has {components} components per voxel; expected a scalar volume")
    image = sitk.GetImageFromArray(np.array(array, copy=True))
    geometry = ijk_to_ras(node)
    axes = geometry[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{_node_label(node)} has a degenerate IJK-to-RAS matrix")
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in _RAS_TO_LPS @ geometry[:3, 3]))
    image.SetDirection(tuple(float(v) for v in (_RAS_TO_LPS @ (axes / spacing)).ravel()))
    return image


def add_volume_node(image: sitk.Image, name: str, scene=None, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node (scalar, or `node_class`) holding `image`, on its grid, added to the scene fully formed.

    The node is built before it enters the scene, so a failure leaves the scene as it was. The name is
    made unique in the scene ("T1Gd (CollaGAN)", then "T1Gd (CollaGAN)_1", ...).
    """
    import slicer

    scene = scene if scene is not None else slicer.mrmlScene
    node = scene.CreateNodeByClass(node_class)
    node.UnRegister(None)  # the Python reference owns it until the scene does
    node.SetName(scene.GenerateUniqueName(name))
    direction = _RAS_TO_LPS @ np.array(image.GetDirection()).reshape(3, 3)
    node.SetIJKToRASDirections(*(float(v) for v in direction.ravel()))  # row-major; columns are the i, j, k axes
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*(float(v) for v in _RAS_TO_LPS @ np.array(image.GetOrigin())))
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    scene.AddNode(node)
    try:
        node.CreateDefaultDisplayNodes()
    except Exception:
        remove_node(node, scene)
        raise
    return node


def add_segmentation_node(mask: sitk.Image, name: str, segment: str, scene=None):
    """A segmentation node holding the non-zero voxels of `mask` as one segment named `segment`, on the mask's
    grid (through a label map that is taken out of the scene again); a failure leaves the scene as it was."""
    import slicer

    scene = scene if scene is not None else slicer.mrmlScene
    labelmap = add_volume_node(sitk.Cast(mask != 0, sitk.sitkUInt8), f"{name} label map", scene, "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    try:
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise RuntimeError(f"the brain mask could not be turned into the segmentation '{name}'")
        segmentation.GetSegmentation().GetNthSegment(0).SetName(segment)
    except Exception:
        remove_node(segmentation, scene)
        raise
    finally:
        remove_node(labelmap, scene)
    return segmentation


def remove_node(node, scene=None) -> None:
    """Take a node this module made (a volume, a segmentation) out of the scene with its display nodes, which the scene
    would otherwise keep as orphans."""
    import slicer

    scene = scene if scene is not None else slicer.mrmlScene
    displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    scene.RemoveNode(node)
    for display in displays:
        if display is not None and scene.IsNodePresent(display):
            scene.RemoveNode(display)


def set_window_to_brain(node, low_percentile: float = 1.0, high_percentile: float = 99.0) -> None:
    """Window/level from percentiles of the non-zero voxels (the brain), so the image is not washed
    out by the zero background that fills most of an imputed volume."""
    import slicer

    array = slicer.util.arrayFromVolume(node)
    brain = array[array != 0]
    if brain.size == 0:
        return
    low, high = (float(v) for v in np.percentile(brain, [low_percentile, high_percentile]))
    display = node.GetDisplayNode()
    if display is None or high <= low:
        return
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(low, high)


def in_scene(node, scene=None) -> bool:
    """Whether `node` is still in the scene; by the node object, not its ID, which a new scene hands to another node."""
    import slicer

    scene = scene if scene is not None else slicer.mrmlScene
    return node is not None and bool(scene.IsNodePresent(node))


def scalar_volume_nodes(scene=None) -> list:
    """The scene's scalar volumes, label maps left out."""
    import slicer

    scene = scene if scene is not None else slicer.mrmlScene
    nodes = (scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
    return [node for node in nodes if not node.IsA("vtkMRMLLabelMapVolumeNode")]
