"""Reading Session: a blinded visual Turing test in 3D Slicer (is this image real or synthetic?).

Create a session from studies and a model, read it as a rater one item at a time in a bare slice view,
and score it. Order, answers, undo, statistics and reports live in CollaGANImputeLib.reading (Qt-free,
tested); the logic only shows an item under a neutral name, and the widget only moves values between
the panel and the engine.
"""

from __future__ import annotations

import time
from pathlib import Path

import qt
import slicer
from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS, display_name
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.io import mrml
from CollaGANImputeLib.scene.imputation import ROLE_ATTRIBUTE
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CollaGANImpute import CollaGANImputeLogic, JobRunner, fillTable

READING_NODE_NAME = "Reading item"  # the same for every item, real or synthetic
READING_CONFIDENCE = ("-", "1 guess", "2", "3", "4", "5 certain")


class ReadingSession(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Reading Session"
        self.parent.categories = ["Image Synthesis"]
        self.parent.dependencies = ["CollaGANImpute"]
        self.parent.contributors = ["CollaGANImpute developers"]
        self.parent.helpText = """
A blinded visual Turing test: raters see real and synthetic images one at a time, with nothing that tells
them apart, and answer Real (R) or Synthetic (S), optionally with a confidence. Create a session from
studies and the CollaGAN Impute module's model, give raters a copy without key.json, and score it with
exact intervals and inter-rater agreement.
See <a href="https://github.com/collagan-impute/CollaGANImpute/blob/main/docs/reading_sessions.md">the documentation</a>.
"""
        self.parent.acknowledgementText = """
The paper's reading test: Lee et al., "Assessing the importance of magnetic resonance contrasts using
collaborative generative adversarial networks", Nature Machine Intelligence 2020.
"""


#
# Logic
#


class ReadingSessionLogic(ScriptedLoadableModuleLogic):
    """Shows the items of a blinded reading session one at a time, with nothing that tells their class.

    This class only puts the current item in the scene under a neutral name with the session's window,
    and (in the application) switches to one bare slice view: no view controllers, corner annotations
    or data probe, which would show node names and voxel values.
    """

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene
        self.node = None
        self._savedView = None

    def open(self, folder: str, rater: str):
        """A Reader for `rater` in the session at `folder` (InputError when either is unusable)."""
        from CollaGANImputeLib.reading.session import Session

        if not rater.strip():
            raise InputError("enter the rater's name first")
        return Session(folder).reader(rater)

    def showItem(self, session, item):
        """Replace the shown item by `item`: a volume node named READING_NODE_NAME, windowed by the session."""
        from CollaGANImputeLib.io.volumes import read_volume

        self.clearItem()
        scene = self.scene or slicer.mrmlScene
        self.node = mrml.add_volume_node(read_volume(session.item_path(item)), READING_NODE_NAME, scene)
        self.node.SetName(READING_NODE_NAME)  # the scene would number it ("Reading item_7"): the same name for all
        self.node.SetAttribute(ROLE_ATTRIBUTE, "reading-item")
        display = self.node.GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(*item.window)
        if getattr(slicer, "app", None) is not None:
            sliceLogic = slicer.app.layoutManager().sliceWidget("Red").sliceLogic()
            sliceLogic.GetSliceCompositeNode().SetBackgroundVolumeID(self.node.GetID())
            sliceLogic.GetSliceCompositeNode().SetForegroundVolumeID(None)
            sliceLogic.GetSliceNode().SetOrientation("Axial")
            sliceLogic.FitSliceToAll()
        return self.node

    def clearItem(self) -> None:
        scene = self.scene or slicer.mrmlScene
        if self.node is not None and scene.IsNodePresent(self.node):
            mrml.remove_node(self.node, scene)
        self.node = None

    def enterReadingView(self) -> None:
        """One slice view without controllers, annotations or data probe; remembers what to restore."""
        if getattr(slicer, "app", None) is None or self._savedView is not None:
            return
        layoutManager = slicer.app.layoutManager()
        annotations = self._sliceAnnotations()
        self._savedView = (layoutManager.layout, annotations.sliceViewAnnotationsEnabled if annotations else None)
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
        self._setViewDecorations(False)

    def leaveReadingView(self) -> None:
        self.clearItem()
        if getattr(slicer, "app", None) is None or self._savedView is None:
            return
        layout, annotationsEnabled = self._savedView
        self._savedView = None
        self._setViewDecorations(True, annotationsEnabled)
        slicer.app.layoutManager().setLayout(layout)

    def _setViewDecorations(self, visible: bool, annotationsEnabled=None) -> None:
        slicer.util.setViewControllersVisible(visible)
        slicer.util.setDataProbeVisible(visible)
        annotations = self._sliceAnnotations()
        if annotations is not None:  # DataProbe keeps the setting as an int
            enabled = visible and (annotationsEnabled is None or bool(annotationsEnabled))
            annotations.sliceViewAnnotationsEnabled = int(enabled)
            if enabled:  # disabling dropped its observers, and updateSliceViewFromGUI alone does not add them back
                annotations.createCornerAnnotations()
            annotations.updateSliceViewFromGUI()

    @staticmethod
    def _sliceAnnotations():
        """The DataProbe module's corner-annotation settings, or None without that module."""
        probe = getattr(slicer.modules, "DataProbeInstance", None)
        return getattr(getattr(probe, "infoWidget", None), "sliceAnnotations", None)

    @staticmethod
    def modelChoice() -> tuple[str, list[str]]:
        """The model chosen in the CollaGAN Impute module ("" for the bundled one) and the contrasts it imputes."""
        modelPath = CollaGANImputeLogic().getParameterNode().GetParameter("ModelPath")
        try:
            return modelPath, list(CollaGANImputeLogic.modelCard(modelPath or None)["contrasts"])
        except (ImportError, InputError, ModelError, OSError):
            return modelPath, list(DEFAULT_CONTRASTS)

    @staticmethod
    def createCommand(studies: str, contrast: str, perClass: int, folder: str, modelPath: str = "") -> list[str]:
        """The engine command that builds a session (run in a background process: it imputes)."""
        command = ["reading-session", "create", "--studies", studies, "--contrast", contrast, "--per-class", str(perClass),
                   "--out", folder, "--progress", "lines"]
        return command + (["--weights", modelPath] if modelPath else [])

    @staticmethod
    def scoreSession(folder: str, exportTo: str | None = None):
        """Results of every rater of the session (reading.report.score_session); with `exportTo`, also
        writes results.csv and report.md (+ report.png) there."""
        from CollaGANImputeLib.reading.report import score_session, write_csv, write_report
        from CollaGANImputeLib.reading.session import Session

        results = score_session(Session(folder))
        if exportTo:
            write_csv(results, Path(exportTo) / "results.csv")
            write_report(results, Path(exportTo) / "report.md")
        return results


#
# Widget
#


class ReadingSessionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to the engine's Reader; the session folder and the rater name files on disk, not scene
    content, so they stay in the panel rather than in a parameter node."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._reader = self._item = self._creation = None
        self._shownAt = 0.0
        self._paused = False
        self._shortcuts: list = []

    def setup(self) -> None:
        import ctk

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ReadingSession.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ReadingSessionLogic()
        self.ui.readingFolderLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.readingStudiesLineEdit.filters = ctk.ctkPathLineEdit.Dirs | ctk.ctkPathLineEdit.Files
        for text in READING_CONFIDENCE:
            self.ui.confidenceComboBox.addItem(text)
        self.ui.startReadingButton.connect("clicked()", self.onStartReading)
        self.ui.realButton.connect("clicked()", lambda: self.onAnswer("real"))
        self.ui.syntheticButton.connect("clicked()", lambda: self.onAnswer("synthetic"))
        self.ui.undoAnswerButton.connect("clicked()", self.onUndoAnswer)
        self.ui.pauseReadingButton.connect("clicked()", self.onPauseReading)
        self.ui.createSessionButton.connect("clicked()", self.onCreateSession)
        self.ui.scoreSessionButton.connect("clicked()", self.onScoreSession)
        self.ui.exportResultsButton.connect("clicked()", lambda: self.onScoreSession(export=True))
        keys = [("R", lambda: self.onAnswer("real")), ("S", lambda: self.onAnswer("synthetic")), ("Ctrl+Z", self.onUndoAnswer)]
        keys += [(str(n), lambda n=n: setattr(self.ui.confidenceComboBox, "currentIndex", n)) for n in range(1, 6)]
        for key, slot in keys:
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", slot)
            self._shortcuts.append(shortcut)
        self._creation = JobRunner(self.ui.createProgressBar, self.ui.readingStatusLabel, 300, self._creationChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self._updateGUI()

    def cleanup(self) -> None:
        """Stop everything this panel started; safe on a panel whose setup did not finish."""
        if self._creation is not None:
            self._creation.stop()
        if self.logic is not None:
            self.logic.leaveReadingView()
        for shortcut in self._shortcuts:  # parented to the main window: would outlive a module reload
            shortcut.enabled = False
            shortcut.deleteLater()
        self._shortcuts = []
        self.removeObservers()

    def enter(self) -> None:
        """The contrasts offered for a new session are those of the CollaGAN Impute module's model."""
        chosen = self.ui.readingContrastComboBox.currentData
        self.ui.readingContrastComboBox.clear()
        for key in self.logic.modelChoice()[1]:
            self.ui.readingContrastComboBox.addItem(display_name(key), key)
        self.ui.readingContrastComboBox.setCurrentIndex(max(0, self.ui.readingContrastComboBox.findData(chosen or "t1gd")))

    def exit(self) -> None:
        self._stop("Stopped on leaving the module; every answer is saved. Start again to continue.")

    def onSceneStartClose(self, caller, event) -> None:
        self._stop("Stopped: the scene was closed; every answer is saved. Start again to continue.")

    def _updateGUI(self, status: str | None = None) -> None:
        reading = self._reader is not None
        answering = reading and not self._paused and self._item is not None
        self.ui.startReadingButton.text = "Stop reading" if reading else "Start or continue reading"
        for widget in (self.ui.realButton, self.ui.syntheticButton, self.ui.confidenceComboBox):
            widget.enabled = answering
        for shortcut in self._shortcuts:
            shortcut.enabled = answering
        self.ui.undoAnswerButton.enabled = reading and not self._paused and self._reader.answered > 0
        self.ui.pauseReadingButton.enabled = reading and self._reader.current() is not None
        self.ui.pauseReadingButton.text = "Resume" if self._paused else "Pause"
        self.ui.readingFolderLineEdit.enabled = self.ui.raterLineEdit.enabled = not reading
        self.ui.readingProgressLabel.text = self._reader.progress_text() if reading else ""
        self.ui.readingItemLabel.text = f"Is this {display_name(self._item.contrast)} image real or synthetic?" if answering else ""
        if status is not None:
            self.ui.readingStatusLabel.text = status

    def _stop(self, status: str) -> None:
        """Leave the reading view and forget the reader (its answers are on disk); no-op when not reading."""
        if self._reader is None:
            return
        self.logic.leaveReadingView()
        self._reader = self._item = None
        self._updateGUI(status)

    def onStartReading(self) -> None:
        if self._reader is not None:
            self._stop("Stopped; every answer is saved. Start again to continue at the next item.")
            return
        try:
            self._reader = self.logic.open(self.ui.readingFolderLineEdit.currentPath, self.ui.raterLineEdit.text)
        except InputError as error:
            slicer.util.errorDisplay(f"Cannot open the reading session: {error}")
            return
        self.logic.enterReadingView()
        self._paused = False
        self._showCurrentItem()

    def _showCurrentItem(self) -> None:
        self._item = self._reader.current()
        self.ui.confidenceComboBox.currentIndex = 0
        if self._item is None:
            self.logic.clearItem()
            self._updateGUI(f"All {self._reader.total} items answered; thank you. Answers: {self._reader.path}")
            return
        self.logic.showItem(self._reader.session, self._item)
        self._shownAt = time.monotonic()
        self._updateGUI("R: real, S: synthetic, 1-5: confidence, Ctrl+Z: undo")

    def onAnswer(self, call: str) -> None:
        if self._reader is None or self._paused or self._item is None:
            return
        confidence = self.ui.confidenceComboBox.currentIndex or None
        try:
            self._reader.answer(call, confidence, item_id=self._item.id, seconds=time.monotonic() - self._shownAt)
        except InputError as error:
            slicer.util.errorDisplay(f"The answer was not recorded: {error}")
        self._showCurrentItem()

    def onUndoAnswer(self) -> None:
        if self._reader is not None and not self._paused and self._reader.undo() is not None:
            self._showCurrentItem()

    def onPauseReading(self) -> None:
        self._paused = not self._paused
        if self._paused:
            self.logic.clearItem()
            self._updateGUI("Paused: the image is hidden and every answer is saved.")
        else:
            self._showCurrentItem()

    def onCreateSession(self) -> None:
        if self._creation.job is not None:
            self._creation.job.cancel()
            return
        command = self.logic.createCommand(self.ui.readingStudiesLineEdit.currentPath, self.ui.readingContrastComboBox.currentData or "t1gd",
                                           self.ui.perClassSpinBox.value, self.ui.readingFolderLineEdit.currentPath,
                                           self.logic.modelChoice()[0])
        with slicer.util.tryWithErrorDisplay("Cannot start building the reading session."):
            job = CollaGANImputeLogic().commandJob(command, stage="Building the reading session").start()
            self._creation.start(job, lambda result: result,
                                 lambda _: setattr(self.ui.readingStatusLabel, "text", "Session created: enter the rater's name and start reading."),
                                 cancelled="Cancelled: no session was written.", refused="Cannot create the reading session",
                                 failed="Creating the reading session failed")

    def _creationChanged(self) -> None:
        self.ui.createSessionButton.text = "Create session" if self._creation.job is None else "Cancel"

    def onScoreSession(self, export: bool = False) -> None:
        folder = self.ui.readingFolderLineEdit.currentPath
        with slicer.util.tryWithErrorDisplay("Cannot score the reading session.", waitCursor=True):
            results = self.logic.scoreSession(folder, folder if export else None)
            fillTable(self.ui.readingResultsTable, results.table())
            agreement = [f"{method} ({contrast}): {kappa:.3f} over {items} items" for contrast, method, kappa, items in results.agreements if method]
            self.ui.readingStatusLabel.text = "\n".join(agreement + ([f"Wrote results.csv and report.md to {folder}"] if export else []))


#
# Test
#


class ReadingSessionTest(ScriptedLoadableModuleTest):
    """Builds a small session from the sample case, reads it through the logic, and scores it."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CreateReadAndScore()

    def test_CreateReadAndScore(self):
        import tempfile

        import SimpleITK as sitk
        from CollaGANImputeLib.analysis.demo import sample_case_files
        from CollaGANImputeLib.model.weights import load_model
        from CollaGANImputeLib.reading.build import SessionSettings, create_session, find_studies

        from CollaGANImpute import registerSampleData

        if not CollaGANImputeLogic().installDependencies(askConfirmation=False):
            self.fail("the Python packages CollaGAN needs could not be installed")
        registerSampleData()
        with tempfile.TemporaryDirectory() as folder:
            study = Path(folder) / "studies" / "BraTS-GLI-00001-000"
            study.mkdir(parents=True)
            for path in sample_case_files(list(DEFAULT_CONTRASTS)).values():
                sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 64:80], str(study / path.name))
            self.delayDisplay("Building a session of 2 real and 2 synthetic T1Gd slices")
            create_session(find_studies(study), SessionSettings(("t1gd",), per_class=2, seed=1, min_gap=3),
                           Path(folder) / "session", load_model())
            logic = ReadingSessionLogic()
            reader = logic.open(str(Path(folder) / "session"), "Self-test")
            while reader.current() is not None:
                node = logic.showItem(reader.session, reader.current())
                self.assertEqual(node.GetName(), READING_NODE_NAME)
                reader.answer("real", 3, seconds=1.0)
            logic.clearItem()
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 0)
            results = logic.scoreSession(str(Path(folder) / "session"))
            self.assertTrue(results.table())
        self.delayDisplay("Test passed: a session was built, read and scored")
