"""CollaGANImputeLogic inside Slicer on synthetic volumes and a tiny untrained model (no download).

Run by ctest (see CMakeLists.txt) or from Slicer's Python console:
    import CollaGANImputeLogicTest; CollaGANImputeLogicTest.run()
"""

import tempfile
import unittest
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.io import mrml

from CollaGANImpute import CollaGANImputeLogic

CONTRASTS = ["t1", "t1gd", "t2", "flair"]


@unittest.skipIf(CollaGANImputeLogic.missingDependencies(), "PyTorch, scikit-image or safetensors is not installed")
class CollaGANImputeLogicTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()
        self.folder = tempfile.TemporaryDirectory()
        import torch
        from CollaGANImputeLib.model.networks import Generator, GeneratorConfig
        from CollaGANImputeLib.model.weights import save_model

        torch.manual_seed(0)
        generator = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=2))
        self.weights = str(save_model(generator, CONTRASTS, Path(self.folder.name) / "tiny.safetensors", {}))

    def tearDown(self):
        self.folder.cleanup()

    def volume(self, name, seed, zero=False):
        z, y, x = np.mgrid[:8, :32, :32]
        brain = ((x - 16) / 12) ** 2 + ((y - 16) / 10) ** 2 + ((z - 4) / 5) ** 2 < 1
        values = 100 + 20 * np.random.default_rng(seed).random(brain.shape)
        image = sitk.GetImageFromArray(np.where(brain & (not zero), values, 0).astype(np.float32))
        image.SetSpacing((0.9, 0.9, 3.0))
        image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # an unusual orientation on purpose
        return mrml.add_volume_node(image, name)

    def test_output_on_reference_grid_inputs_untouched(self):
        inputs = {k: self.volume(k, i) for i, k in enumerate(("t1", "t2", "flair"))}
        before = {k: slicer.util.arrayFromVolume(n).copy() for k, n in inputs.items()}
        output = CollaGANImputeLogic().impute(inputs, "t1gd", reference="t2", weights=self.weights)
        self.assertEqual(output.GetName(), "T1Gd (CollaGAN)")
        self.assertTrue(np.array_equal(mrml.ijk_to_ras(output), mrml.ijk_to_ras(inputs["t2"])))
        for key, node in inputs.items():
            self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(node), before[key]))

    def test_failure_adds_no_node(self):
        inputs = {"t1": self.volume("t1", 0), "t2": self.volume("t2", 1, zero=True), "flair": self.volume("flair", 2)}
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            CollaGANImputeLogic().impute(inputs, "t1gd", weights=self.weights)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)


def run():
    unittest.TextTestRunner(verbosity=2).run(unittest.defaultTestLoader.loadTestsFromTestCase(CollaGANImputeLogicTest))
