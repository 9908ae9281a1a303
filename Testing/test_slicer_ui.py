"""The module's .ui file outside Slicer: it loads, it names every widget the Python code uses, and it
renders to the panel screenshot used by the README (PySide6 with stand-ins for the Slicer widgets,
ui_stand_ins.py).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest
from CollaGANImputeLib.scene import describe
from conftest import REPO
from PySide6.QtCore import Qt  # noqa: E402  (after the stand-ins' skip guard)
from ui_stand_ins import UI_FILE, QtWidgets, load_panel, ui_names

MODULE = REPO / "CollaGANImpute" / "CollaGANImpute.py"


@pytest.fixture(scope="module")
def panel():
    return load_panel()


def test_every_ui_name_the_module_uses_exists():
    """Widgets named in the module's code, and those the panel's button states name (scene/describe.py)."""
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used, "the module does not use self.ui at all?"
    used |= set(describe.button_states(problems=[], missing="t1gd", inputs={}, running=False, analysing=False, has_card=True,
                                       has_output=False, has_real=False, scored_contrast=None))
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


def test_panel_loads_and_renders_the_screenshot(panel, module, sample_files, screenshots):
    """The panel as it looks after an evaluated run, rendered for the README (screenshots fixture).

    The stand-ins hold no scene, so the widgets are filled by hand; the figures are real: the bundled
    model imputes T1Gd of the sample case on this machine, and the texts come from the module's own
    formatting functions.
    """
    import time

    from CollaGANImputeLib.analysis.evaluation import score_imputation
    from CollaGANImputeLib.inference.imputation import impute
    from CollaGANImputeLib.model.weights import load_model

    model = load_model()
    slices: list[int] = []
    started = time.monotonic()
    result = impute({k: sample_files[k] for k in ("t1", "t2", "flair")}, "t1gd", model,
                    progress=lambda done, total: slices.append(total))
    seconds = time.monotonic() - started
    metrics, _ = score_imputation(result, sample_files["t1gd"])

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
    find(QtWidgets.QLabel, "metricsLabel").setText(describe.metrics_html(metrics))
    find(QtWidgets.QPushButton, "evaluateButton").setEnabled(True)
    panel.setAttribute(Qt.WA_DontShowOnScreen)
    panel.resize(440, 10)
    panel.show()
    panel.resize(440, panel.sizeHint().height())
    QtWidgets.QApplication.processEvents()
    image = panel.grab()
    assert image.width() >= 400 and image.height() > 400
    assert image.save(str(screenshots / "panel.png"), "PNG")
    assert (screenshots / "panel.png").stat().st_size > 10_000
