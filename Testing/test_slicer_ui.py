"""The module's .ui file outside Slicer: it loads, it names every widget the Python code uses, and it
renders to the panel screenshot used by the README.

PySide6 stands in for Slicer's Qt: CTK and qMRML classes are not available, so a loader maps each to a
plain Qt class that looks alike (a collapsible button becomes a titled group box, a node selector a
combo box). That checks the file's structure and names, not Slicer's widgets themselves.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import REPO

MODULE = REPO / "CollaGANImpute" / "CollaGANImpute.py"
UI_FILE = REPO / "CollaGANImpute" / "Resources" / "UI" / "CollaGANImpute.ui"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "panel.png"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed (pip install PySide6-Essentials)")
from PySide6.QtCore import Property, QFile, Qt  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402


class CollapsibleButton(QtWidgets.QGroupBox):
    """ctkCollapsibleButton look-alike: its `text` is the group title; `collapsed` hides the contents."""

    def _text(self) -> str:
        return self.title()

    def _set_text(self, value: str) -> None:
        self.setTitle(value)

    def _collapsed(self) -> bool:
        return bool(self.property("_collapsed"))

    def _set_collapsed(self, value: bool) -> None:
        self.setProperty("_collapsed", value)

    text = Property(str, _text, _set_text)
    collapsed = Property(bool, _collapsed, _set_collapsed)


class CollapsibleGroupBox(QtWidgets.QGroupBox):
    """ctkCollapsibleGroupBox look-alike: a checkable group box whose contents hide when collapsed."""

    def _collapsed(self) -> bool:
        return bool(self.property("_collapsed"))

    def _set_collapsed(self, value: bool) -> None:
        self.setProperty("_collapsed", value)

    collapsed = Property(bool, _collapsed, _set_collapsed)

    def showEvent(self, event) -> None:  # children exist only after the loader set the properties
        self.setCheckable(True)
        self.setChecked(not self._collapsed())
        for child in self.findChildren(QtWidgets.QWidget):
            child.setVisible(not self._collapsed())
        super().showEvent(event)


class NodeComboBox(QtWidgets.QComboBox):
    """qMRMLNodeComboBox look-alike with its list-type properties accepted."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.addItem("None")

    def _types(self) -> list:
        return []

    nodeTypes = Property(list, _types, lambda self, value: None)


STAND_INS = {
    "qMRMLWidget": QtWidgets.QWidget,
    "qMRMLNodeComboBox": NodeComboBox,
    "ctkCollapsibleButton": CollapsibleButton,
    "ctkCollapsibleGroupBox": CollapsibleGroupBox,
    "ctkPathLineEdit": QtWidgets.QLineEdit,
}


class StandInLoader(QUiLoader):
    def createWidget(self, class_name, parent=None, name=""):
        if class_name in STAND_INS:
            widget = STAND_INS[class_name](parent)
            widget.setObjectName(name)
            return widget
        return super().createWidget(class_name, parent, name)


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture(scope="module")
def panel(app):
    handle = QFile(str(UI_FILE))
    assert handle.open(QFile.ReadOnly)
    widget = StandInLoader().load(handle)
    handle.close()
    assert widget is not None, "the .ui file did not load"
    return widget


def ui_names() -> dict[str, str]:
    root = ElementTree.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def test_every_ui_name_the_module_uses_exists():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used, "the module does not use self.ui at all?"
    missing = sorted(used - set(ui_names()))
    assert not missing, f"CollaGANImpute.py uses widgets the .ui lacks: {missing}"


def test_ui_follows_slicer_conventions():
    root = ElementTree.parse(UI_FILE).getroot()
    names = ui_names()
    assert root.find("widget").get("class") == "qMRMLWidget"
    assert {names[n] for n in ("inputsCollapsibleButton", "modelCollapsibleButton", "outputCollapsibleButton",
                               "evaluationCollapsibleButton")} == {"ctkCollapsibleButton"}
    assert names["applyButton"] == "QPushButton" and names["progressBar"] == "QProgressBar"
    selectors = {n for n, c in names.items() if c == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert selectors == connected == {"maskSelector", "outputSelector", "realVolumeSelector", "labelMapSelector"}
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    assert {c for c in names.values() if c.startswith(("ctk", "qMRML"))} <= declared


def test_panel_loads_and_renders_the_screenshot(panel, module, sample_files):
    """The panel after Auto-assign and an evaluated run, filled with a real run's figures, saved for the README.

    The run is real: the bundled model imputes T1Gd of the sample case on this machine, and the texts
    come from the module's own formatting functions.
    """
    import time

    from CollaGANImputeLib.evaluation import score_imputation
    from CollaGANImputeLib.inference import impute
    from CollaGANImputeLib.model_io import load_model

    model = load_model()
    slices: list[int] = []
    started = time.monotonic()
    result = impute({k: sample_files[k] for k in ("t1", "t2", "flair")}, "t1gd", model,
                    progress=lambda done, total: slices.append(total))
    seconds = time.monotonic() - started
    metrics = score_imputation(result, sample_files["t1gd"])

    QtWidgets.QApplication.setStyle("Fusion")
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    find(QtWidgets.QFrame, "dependenciesFrame").hide()
    missing = find(QtWidgets.QComboBox, "missingContrastComboBox")
    for key in ("T1", "T1Gd", "T2", "FLAIR"):
        missing.addItem(key)
    missing.setCurrentText("T1Gd")
    rows = find(QtWidgets.QWidget, "inputsContainer").layout()
    for key, path in (("T1", sample_files["t1"]), ("T1Gd", None), ("T2", sample_files["t2"]), ("FLAIR", sample_files["flair"])):
        selector = QtWidgets.QComboBox()
        selector.addItem(path.name.split(".")[0] if path else "None")
        selector.setEnabled(path is not None)
        label = QtWidgets.QLabel(f"{key}:")
        label.setEnabled(path is not None)
        rows.addRow(label, selector)
    find(QtWidgets.QComboBox, "referenceComboBox").addItem("First input in model order")
    find(QtWidgets.QLineEdit, "modelPathLineEdit").setPlaceholderText("bundled model")
    find(QtWidgets.QLabel, "modelSummaryLabel").setText(
        f"{model.name}: imputes {', '.join(module.display_name(k) for k in model.contrasts)}, any missing ones from any others (leave rows empty)")
    device = find(QtWidgets.QComboBox, "deviceComboBox")
    device.addItems(["Auto", "CPU", "CUDA GPU"])
    find(QtWidgets.QLabel, "gpuLabel").setText(module.CollaGANImputeLogic.deviceDescription())
    find(QtWidgets.QComboBox, "orientationComboBox").addItems(["Axial", "Coronal", "Sagittal"])
    apply = find(QtWidgets.QPushButton, "applyButton")
    apply.setEnabled(True)
    apply.setText("Impute")
    progress = find(QtWidgets.QProgressBar, "progressBar")
    progress.setRange(0, slices[-1])
    progress.setValue(slices[-1])
    progress.show()
    find(QtWidgets.QLabel, "statusLabel").setText(f"T1Gd (CollaGAN) made from {slices[-1]} brain slices in {seconds:.1f} s")
    for name, text in (("outputSelector", "T1Gd (CollaGAN)"), ("realVolumeSelector", sample_files["t1gd"].name.split(".")[0])):
        find(QtWidgets.QComboBox, name).setItemText(0, text)
    find(QtWidgets.QLabel, "realVolumeLabel").setText("Real T1Gd:")
    find(QtWidgets.QLabel, "metricsLabel").setText(module.describeMetrics(metrics))
    find(QtWidgets.QPushButton, "evaluateButton").setEnabled(True)
    panel.setAttribute(Qt.WA_DontShowOnScreen)
    panel.resize(440, 10)
    panel.show()
    panel.resize(440, panel.sizeHint().height())
    QtWidgets.QApplication.processEvents()
    image = panel.grab()
    assert image.width() >= 400 and image.height() > 400
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(SCREENSHOT), "PNG")
    assert SCREENSHOT.stat().st_size > 10_000
