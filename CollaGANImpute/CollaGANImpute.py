"""CollaGANImpute: impute a missing MRI contrast (T1, T1Gd, T2, FLAIR) of a brain study in 3D Slicer.

The widget only wires the panel to CollaGANImputeLogic, whose work lives in CollaGANImputeLib.scene (Qt-free,
tested on real MRML nodes); this file adds what needs the application. PyTorch is imported only when work starts."""

from __future__ import annotations

import importlib
import io
import logging
import traceback
from pathlib import Path

import numpy as np
import qt
import slicer
import vtk
from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.errors import Cancelled, InputError, ModelError
from CollaGANImputeLib.io import mrml
from CollaGANImputeLib.preparation.ood_checks import OutOfDistribution
from CollaGANImputeLib.scene import describe, parameters
from CollaGANImputeLib.scene.logic import DEPENDENCIES, ModuleLogic
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

TORCH_VERSION_REQUIREMENT = ">=2.1"
DEVICES = (("auto", "Auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"))
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
UNCERTAINTY_OPACITY = 0.5
SAMPLE_NAME = "BraTS-GLI-00001-000"


class CollaGANImpute(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CollaGAN Impute"
        self.parent.categories = ["Image Synthesis"]
        self.parent.dependencies = []
        self.parent.contributors = ["CollaGANImpute developers"]
        self.parent.helpText = """
Impute missing MRI contrasts (T1, T1Gd, T2, FLAIR) of a brain study from those you have, with CollaGAN: assign
the volumes (or Auto-assign), choose the missing contrast, press Impute. Given the real volume, it shows real,
imputed and |difference| with SSIM, PSNR and NMSE; the reliability map shows where not to trust the result, and
Analysis ranks the contrasts from redundant to indispensable. A synthetic image is not a diagnostic image.
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
    files = sorted((moduleDir / "Resources" / "SampleData" / SAMPLE_NAME).glob("*.nii.gz"))
    if files:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="CollaGANImpute", sampleName=SAMPLE_NAME,
            thumbnailFileName=str(moduleDir / "Resources" / "Icons" / "CollaGANImputeSample.png"),
            uris=[f.as_uri() for f in files], fileNames=[f.name for f in files],
            nodeNames=[f.name[: -len(".nii.gz")] for f in files])


class CollaGANImputeLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """Everything the module does, usable from the Python console without the panel (CollaGANImputeLib.scene:
    impute, evaluate, analyse, batch, train); here only what needs the application."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self)

    @staticmethod
    def setDefaultParameters(parameterNode) -> None:
        parameters.set_defaults(parameterNode)

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
        if "torch" in missing and hasattr(slicer.modules, "pytorchutils"):  # the PyTorch extension picks the CUDA build for this GPU
            import PyTorchUtils

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION_REQUIREMENT) is None:
                return False
            missing.remove("torch")
        if missing:
            slicer.util.pip_install([DEPENDENCIES[m] for m in missing])
        importlib.invalidate_caches()
        return not self.missingDependencies()

    @staticmethod
    def pythonExecutable() -> str:
        """PythonSlicer inside Slicer (the application binary cannot run scripts), else this Python."""
        if getattr(slicer, "app", None) is None:
            return ModuleLogic.pythonExecutable()
        import shutil

        found = shutil.which("PythonSlicer")
        if not found:
            raise RuntimeError("PythonSlicer was not found on PATH")
        return found

    def showComparison(self, inputNodes: dict, outputNode, realNode=None, differenceNode=None, orientation: str = "Axial",
                       uncertaintyNode=None, otherOutputs: dict | None = None) -> None:
        """Switch to linked views: one per input (model order), one for the output (with the reliability
        map as a colour overlay when given), real and |difference| when given, then the other imputed
        contrasts; same slice, zoom and pan. Does nothing without the application."""
        if getattr(slicer, "app", None) is None or outputNode is None:
            return
        layoutId, xml, nodes = describe.comparison_layout(inputNodes, outputNode, realNode, differenceNode, otherOutputs, orientation)
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        (layoutNode.SetLayoutDescription if layoutNode.IsLayoutDescription(layoutId) else layoutNode.AddLayoutDescription)(layoutId, xml)
        layoutManager.setLayout(layoutId)
        sliceLogics = [layoutManager.sliceWidget(f"{describe.COMPARISON_VIEW}{i}").sliceLogic() for i in range(len(nodes))]
        for sliceLogic, node in zip(sliceLogics, nodes):
            composite = sliceLogic.GetSliceCompositeNode()
            composite.SetLinkedControl(False)  # set each view's volume without broadcasting it
            composite.SetBackgroundVolumeID(node.GetID())
            overlay = uncertaintyNode if node is outputNode else None
            composite.SetForegroundVolumeID(overlay.GetID() if overlay is not None else None)
            composite.SetForegroundOpacity(UNCERTAINTY_OPACITY if overlay is not None else 0.0)
            composite.SetLabelVolumeID(None)
            sliceLogic.GetSliceNode().SetOrientation(orientation)
            sliceLogic.FitSliceToAll()
        bounds = [0.0] * 6
        outputNode.GetRASBounds(bounds)
        center = [(bounds[2 * i] + bounds[2 * i + 1]) / 2 for i in range(3)]
        fieldOfView = sliceLogics[nodes.index(outputNode)].GetSliceNode().GetFieldOfView()
        for sliceLogic in sliceLogics:
            sliceLogic.GetSliceNode().SetFieldOfView(*fieldOfView)
            sliceLogic.GetSliceNode().JumpSliceByCentering(*center)
            sliceLogic.GetSliceCompositeNode().SetLinkedControl(True)


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


class JobRunner:
    """A worker job shown in a progress bar and a status label, polled from a QTimer on the main thread and
    ended there; `changed` is called when it starts and ends (to update the buttons)."""

    def __init__(self, progressBar, label, interval: int, changed) -> None:
        self.job = None
        self._progressBar, self._label, self._changed = progressBar, label, changed
        self._timer = qt.QTimer()
        self._timer.setInterval(interval)
        self._timer.connect("timeout()", self._poll)
        progressBar.hide()

    def start(self, job, finish, show, *, cancelled: str, refused: str, failed: str, handleRefusal=None) -> None:
        """Poll `job`; once it is done, `show(finish(result))` on the main thread. A cancel (`cancelled`), a refused
        input (`refused`: error; unless `handleRefusal(error)` deals with it) or an unexpected error (`failed`: error)
        is said in the label, errors also in a dialog."""
        self.job, self._finish, self._show, self._messages = job, finish, show, (cancelled, refused, failed)
        self._handleRefusal = handleRefusal
        self._progressBar.show()
        self._timer.start()
        self._changed()

    def stop(self) -> None:
        """Cancel the job (its worker stops at its next check) and stop polling."""
        if self.job is not None:
            self.job.cancel()
        self._timer.stop()

    def _poll(self) -> None:
        state = self.job.state()
        self._progressBar.maximum = state.total  # 0: busy indicator until the work is counted
        self._progressBar.value = state.done
        self._label.text = state.stage
        if not state.finished:
            return
        self._timer.stop()
        self._progressBar.hide()
        job, self.job = self.job, None
        cancelled, refused, failed = self._messages
        try:
            result = self._finish(job.result())
        except Cancelled:
            self._label.text = cancelled
        except (InputError, ModelError) as error:
            if self._handleRefusal is None or not self._handleRefusal(error):
                self._label.text = "Failed."
                slicer.util.errorDisplay(f"{refused}: {error}")
        except Exception as error:
            self._label.text = "Failed."
            logging.error(traceback.format_exc())
            slicer.util.errorDisplay(f"{failed}: {error}", detailedText=traceback.format_exc())
        else:
            self._show(result)
        finally:
            self._changed()


class CollaGANImputeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to CollaGANImputeLogic; every selection lives in the parameter node.

    The parameter node is a plain vtkMRMLScriptedModuleNode rather than a parameterNodeWrapper class,
    because its inputs depend on the model card: one node reference per contrast ("Input_t1", ...).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._card = self._cardPath = None
        self._updatingGUI, self._cardError = False, ""
        self._inputRows: dict = {}
        self._imputation = self._analysis = None

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
        self._imputation = JobRunner(self.ui.progressBar, self.ui.statusLabel, 100, self._updateButtons)
        self._analysis = JobRunner(self.ui.analysisProgressBar, self.ui.analysisStatusLabel, 200, self._updateButtons)
        # Parameter -> widget, for the plain values and node references the parameter node holds.
        self._selectors = {"Mask": self.ui.maskSelector, "Real": self.ui.realVolumeSelector, "Output": self.ui.outputSelector,
                           "LabelMap": self.ui.labelMapSelector}
        self._checkBoxes = {"Uncertainty": self.ui.uncertaintyCheckBox, "BestQuality": self.ui.bestQualityCheckBox,
                            "ThreePlanes": self.ui.threePlanesCheckBox, "Prepare": self.ui.prepareCheckBox}

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for combo in (self.ui.missingContrastComboBox, self.ui.referenceComboBox, self.ui.deviceComboBox, self.ui.orientationComboBox):
            combo.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        for selector in self._selectors.values():
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        for checkBox in self._checkBoxes.values():
            checkBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        # The model path has its own slot: a new model rebuilds the input rows, which must never happen inside
        # a signal of one of those rows (the Bundled button clears it). A cleared report folder sends no path
        # change, only its loss of valid input.
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        for signal in ("currentPathChanged(QString)", "validInputChanged(bool)"):
            self.ui.analysisFolderLineEdit.connect(signal, self.updateParameterNodeFromGUI)
        self.ui.segmenterLineEdit.connect("textChanged(QString)", self.updateParameterNodeFromGUI)
        for button, slot in ((self.ui.bundledModelButton, self.onBundledModel), (self.ui.autoAssignButton, self.onAutoAssign),
                             (self.ui.applyButton, self.onApplyButton), (self.ui.showComparisonButton, self.onShowComparison),
                             (self.ui.evaluateButton, self.onEvaluate), (self.ui.installDependenciesButton, self.onInstallDependencies),
                             (self.ui.analyseButton, self.onAnalyse)):
            button.connect("clicked()", slot)
        self._refreshDependencies()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Stop everything this panel started; safe on a panel whose setup did not finish."""
        for runner in (self._imputation, self._analysis):
            if runner is not None:
                runner.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        for job in (self._imputation.job, self._analysis.job):  # their results belong to the scene being closed
            if job is not None:
                job.cancel()
        self.logic.lastOutcome = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

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
        return parameters.input_nodes(self._parameterNode, self._contrasts()) if self._parameterNode else {}

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
                selector.setCurrentNode(node.GetNodeReference(parameters.INPUT_REFERENCE + key))
                label.enabled = selector.enabled = key != missing
                selector.toolTip = (f"{display_name(key)} is the contrast to impute" if key == missing
                                    else f"The {display_name(key)} volume of the study")
            for role, selector in self._selectors.items():
                selector.setCurrentNode(node.GetNodeReference(role))
            for name, checkBox in self._checkBoxes.items():
                checkBox.checked = node.GetParameter(name) == "true"
            if self.ui.segmenterLineEdit.text != node.GetParameter("Segmenter"):  # keeps the cursor while typing
                self.ui.segmenterLineEdit.text = node.GetParameter("Segmenter")
            if self.ui.analysisFolderLineEdit.currentPath != node.GetParameter("AnalysisFolder"):
                self.ui.analysisFolderLineEdit.currentPath = node.GetParameter("AnalysisFolder")
            self.ui.realVolumeLabel.text = f"Real {display_name(missing)}:" if missing else "Real volume:"
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
        for name, checkBox in self._checkBoxes.items():
            node.SetParameter(name, "true" if checkBox.checked else "false")
        for key, (_, selector) in self._inputRows.items():
            node.SetNodeReferenceID(parameters.INPUT_REFERENCE + key, selector.currentNodeID or None)
        for role, selector in self._selectors.items():
            node.SetNodeReferenceID(role, selector.currentNodeID or None)
        node.SetParameter("Segmenter", self.ui.segmenterLineEdit.text)
        node.SetParameter("AnalysisFolder", self.ui.analysisFolderLineEdit.currentPath)
        if self.ui.missingContrastComboBox.count:  # empty while no model card could be read
            parameters.set_missing(node, self.ui.missingContrastComboBox.currentData or "")
            node.SetParameter("Reference", self.ui.referenceComboBox.currentData or "")
        node.EndModify(wasModified)

    def _loadCard(self, modelPath: str) -> None:
        """Read the card and rebuild the contrast rows from it (rows follow the model, not a fixed four)."""
        self._cardPath = modelPath
        self._card, self._cardError = self.logic.readCard(modelPath or None)
        contrasts = self._contrasts()
        if self._card:
            self.ui.modelSummaryLabel.text = describe.model_summary(self._card, self.logic.mostMissing(self._card))
            self.ui.modelCardTextBrowser.setHtml(describe.card_html(self._card))
        else:
            self.ui.modelSummaryLabel.text = self._cardError
            self.ui.modelCardTextBrowser.setPlainText(self._cardError)
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
            selector.nodeTypes, selector.noneEnabled = ["vtkMRMLScalarVolumeNode"], True
            selector.showChildNodeTypes = selector.selectNodeUponCreation = False
            selector.addEnabled = selector.removeEnabled = selector.renameEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
            label = qt.QLabel(f"{display_name(key)}:")
            layout.addRow(label, selector)
            self._inputRows[key] = (label, selector)

    def _fillReferenceCombo(self, missing: str, reference: str) -> None:
        self.ui.referenceComboBox.clear()
        for text, key in [("First input in model order", ""), *((f"{display_name(k)} grid", k) for k in self._contrasts() if k != missing)]:
            self.ui.referenceComboBox.addItem(text, key)
        self.ui.referenceComboBox.setCurrentIndex(max(0, self.ui.referenceComboBox.findData(reference)))

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
            self._dependenciesReady()
        self._cardPath = None  # re-read the card now that it can be read
        self.updateGUIFromParameterNode()

    def _dependenciesReady(self) -> bool:
        """Install missing packages after the user agrees; False (panel refreshed) when they are still missing."""
        ready = self.logic.installDependencies(askConfirmation=True)
        self._refreshDependencies()
        return ready

    def _updateButtons(self) -> None:
        if self._imputation is None:  # setup has not made the runners yet
            return
        outcome = self.logic.currentOutcome()
        problems = [self._cardError] if self._card is None else self.logic.inputProblems(
            self._contrasts(), self._missing(), self._inputs(), self.logic.mostMissing(self._card))
        states = describe.button_states(
            problems=problems, missing=self._missing(), inputs=self._inputs(), running=self._imputation.job is not None,
            analysing=self._analysis.job is not None, has_card=self._card is not None,
            has_output=self.ui.outputSelector.currentNode() is not None, has_real=self.ui.realVolumeSelector.currentNode() is not None,
            scored_contrast=outcome.imputation.missing if outcome is not None else None)
        for name, properties in states.items():
            for prop, value in properties.items():
                setattr(getattr(self.ui, name), prop, value)

    def onAutoAssign(self) -> None:
        contrasts, missing = self._contrasts(), self._missing()
        found = self.logic.assignVolumes(contrasts)
        parameters.assign(self._parameterNode, found)
        unassigned = [display_name(k) for k in contrasts if k not in found and k != missing]
        self.ui.statusLabel.text = (
            "Assigned " + ", ".join(f"{display_name(k)} ← '{v.GetName()}'" for k, v in found.items())
            + (f". No single volume name matches {', '.join(unassigned)}: choose it by hand." if unassigned else "."))

    def onApplyButton(self) -> None:
        if self._imputation.job is not None:
            self._imputation.job.cancel()
            self.ui.statusLabel.text = "Cancelling after the current slice batch..."
            self.ui.applyButton.enabled = False
            return
        if not self._dependenciesReady():
            return
        node = self._parameterNode
        try:
            request = self.logic.prepareImputation(
                self._inputs(), self._missing(), mask=node.GetNodeReference("Mask"), reference=node.GetParameter("Reference"),
                real=node.GetNodeReference("Real"), **parameters.model_choice(node), **parameters.imputation_options(node))
        except (InputError, ModelError) as error:
            slicer.util.errorDisplay(f"Cannot impute: {error}")
            return
        self.ui.metricsLabel.text = ""
        self._imputation.start(self.logic.startImputation(request), lambda computed: self.logic.finishImputation(request, computed),
                               self._showOutcome, cancelled="Cancelled: nothing was added to the scene.", refused="Cannot impute",
                               failed="Imputation failed", handleRefusal=self._offerToPrepare)

    def _offerToPrepare(self, error) -> bool:
        """A study the checks refused as raw: offer to tick Prepare and impute again; True when the user agreed."""
        if (not isinstance(error, OutOfDistribution) or self._parameterNode.GetParameter("Prepare") == "true"
                or not slicer.util.confirmYesNoDisplay(f"Cannot impute: {error}\n\nPrepare the raw study (register, extract the "
                                                       "brain, resample to 1 mm) and impute again?")):
            return False
        self._parameterNode.SetParameter("Prepare", "true")
        qt.QTimer.singleShot(0, self.onApplyButton)  # after this job's end has been handled
        return True

    def _showOutcome(self, outcome) -> None:
        self._parameterNode.SetNodeReferenceID("Output", outcome.outputNode.GetID())
        self.ui.statusLabel.text = describe.outcome_status(outcome)
        if outcome.comparison is not None:
            self.ui.metricsLabel.text = describe.metrics_html(outcome.comparison.metrics)
        self.onShowComparison()

    def onShowComparison(self) -> None:
        """An output of the last run as that run was made (logic.comparisonOf); any other volume beside the
        panel's inputs and real volume."""
        output = self.ui.outputSelector.currentNode()
        views = self.logic.comparisonOf(output) or {"inputNodes": self._inputs(), "outputNode": output,
                                                    "realNode": self.ui.realVolumeSelector.currentNode()}
        with slicer.util.tryWithErrorDisplay("Could not set up the comparison views."):
            self.logic.showComparison(**views, orientation=self.ui.orientationComboBox.currentText)

    def onEvaluate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Scoring failed.", waitCursor=True):
            self.ui.metricsLabel.text = describe.metrics_html(self.logic.evaluate(self.ui.realVolumeSelector.currentNode()))
            self.onShowComparison()

    def onAnalyse(self) -> None:
        if self._analysis.job is not None:
            self._analysis.job.cancel()
            self.ui.analysisStatusLabel.text = "Cancelling..."
            return
        if not self._dependenciesReady():
            return
        volumes = {**self._inputs(), self._missing(): self.ui.realVolumeSelector.currentNode()}  # every contrast's volume
        try:
            request = self.logic.prepareImportance(volumes, labels=self.ui.labelMapSelector.currentNode(),
                                                   segmenter=self.ui.segmenterLineEdit.text, **parameters.model_choice(self._parameterNode))
        except (InputError, ModelError) as error:
            slicer.util.errorDisplay(f"Cannot analyse: {error}")
            return
        self._analysis.start(self.logic.startImportance(request), lambda report: report, self._showImportance,
                             cancelled="Cancelled.", refused="Cannot analyse", failed="The analysis failed")

    def _writeImportance(self, report) -> str:
        """Write the report into the chosen folder, if any; a failure is said without losing what is shown."""
        folder = self.ui.analysisFolderLineEdit.currentPath
        try:
            return f" Report written to {Path(next(iter(self.logic.writeImportance(report, folder).values()))).parent}." if folder else ""
        except OSError as error:
            slicer.util.errorDisplay(f"The analysis is shown, but its report could not be written to '{folder}': {error}")
            return " The report was not written."

    def _showImportance(self, report) -> None:
        from CollaGANImputeLib.analysis.importance_report import figure

        fillTable(self.ui.analysisTable, report.table())
        buffer = io.BytesIO()
        figure(report).save(buffer, format="PNG")
        pixmap = qt.QPixmap()
        pixmap.loadFromData(qt.QByteArray(buffer.getvalue()))
        self.ui.analysisFigureLabel.setPixmap(pixmap.scaledToWidth(min(pixmap.width(), 420)))
        self.ui.analysisStatusLabel.text = describe.ranking_sentence(report) + self._writeImportance(report)


class CollaGANImputeTest(ScriptedLoadableModuleTest):
    """The bundled sample case through the logic: T1Gd and FLAIR imputed from T1 and T2 alone, each with its
    reliability map, on the input's grid, T1Gd scored against the real one."""

    def runTest(self):
        import SampleData

        slicer.mrmlScene.Clear()
        registerSampleData()
        SampleData.downloadSamples(SAMPLE_NAME)
        logic = CollaGANImputeLogic()
        if not logic.installDependencies(askConfirmation=False):
            self.fail("the Python packages CollaGAN needs could not be installed")
        found = logic.assignVolumes(logic.modelCard()["contrasts"])
        self.assertEqual(sorted(found), ["flair", "t1", "t1gd", "t2"], "every sample file should be recognised from its name")
        self.delayDisplay("Imputing T1Gd and FLAIR from T1 and T2, with reliability maps")
        output = logic.impute({"t1": found["t1"], "t2": found["t2"]}, "t1gd", real=found["t1gd"], uncertainty=True)
        outcome = logic.lastOutcome
        self.assertEqual((output.GetName(), sorted(outcome.outputNodes)), ("T1Gd (CollaGAN)", ["flair", "t1gd"]))
        self.assertEqual(output.GetImageData().GetDimensions(), found["t1"].GetImageData().GetDimensions())
        self.assertTrue(np.allclose(mrml.ijk_to_ras(output), mrml.ijk_to_ras(found["t1"]), atol=1e-6))
        ssim = outcome.comparison.metrics["ssim_brain"]
        self.assertTrue(np.isfinite(ssim) and 0.0 <= ssim <= 1.0 and sorted(outcome.uncertaintyNodes) == ["flair", "t1gd"], f"SSIM {ssim}")
        for node in outcome.uncertaintyNodes.values():
            self.assertEqual(node.GetAttribute("CollaGANImpute.Units"), outcome.imputation.uncertainty_meaning)
            self.assertTrue(np.isfinite(slicer.util.arrayFromVolume(node)).all() and slicer.util.arrayFromVolume(node).min() >= 0)
        logic.showComparison(**logic.comparisonOf(output))
        self.delayDisplay(f"Test passed: T1Gd and FLAIR imputed with their maps; T1Gd SSIM (brain) {ssim:.3f}")
