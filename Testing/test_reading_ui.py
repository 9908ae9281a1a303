"""The Reading Session module's .ui file, and the README screenshot of a rater mid-session.

The session is real: the bundled model imputes T1Gd of the bundled sample case (16 axial slices), a
session is built from it, and a rater answers two items through the engine's Reader. The picture shows
the next item (windowed as the module windows it) beside the panel, whose texts are set by hand from
the Reader's state as the module would set them (the stand-ins hold no scene).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import SimpleITK as sitk
from conftest import REPO
from PIL import Image
from ui_stand_ins import READING_UI_FILE, QtWidgets, load_panel, ui_names

READING_WIDGETS = {
    "readingCollapsibleButton": "ctkCollapsibleButton", "readingFolderLineEdit": "ctkPathLineEdit", "raterLineEdit": "QLineEdit",
    "startReadingButton": "QPushButton", "realButton": "QPushButton", "syntheticButton": "QPushButton",
    "confidenceComboBox": "QComboBox", "undoAnswerButton": "QPushButton", "pauseReadingButton": "QPushButton",
    "readingProgressLabel": "QLabel", "readingItemLabel": "QLabel", "createSessionGroupBox": "ctkCollapsibleGroupBox",
    "readingStudiesLineEdit": "ctkPathLineEdit", "readingContrastComboBox": "QComboBox", "perClassSpinBox": "QSpinBox",
    "createSessionButton": "QPushButton", "scoreSessionButton": "QPushButton", "exportResultsButton": "QPushButton",
    "readingResultsTable": "QTableWidget", "readingStatusLabel": "QLabel",
}


def test_reading_panel_has_its_widgets_and_shortcut_hints():
    names = ui_names(READING_UI_FILE)
    assert {n: names.get(n) for n in READING_WIDGETS} == READING_WIDGETS
    root = ElementTree.parse(READING_UI_FILE).getroot()
    assert root.find("widget").get("class") == "qMRMLWidget"
    texts = {w.get("name"): w.findtext("property[@name='text']/string") for w in root.iter("widget")}
    assert texts["realButton"] == "Real (R)" and texts["syntheticButton"] == "Synthetic (S)"
    assert texts["readingCollapsibleButton"] == "Reading session"


def test_every_ui_name_the_reading_module_uses_exists():
    used = set(re.findall(r"self\.ui\.(\w+)", (REPO / "CollaGANImpute" / "ReadingSession.py").read_text(encoding="utf-8")))
    assert used and not used - set(ui_names(READING_UI_FILE)), f"ReadingSession.py uses widgets its .ui lacks: {used - set(ui_names(READING_UI_FILE))}"
    assert not used & set(ui_names()), "the imputation panel still holds reading-session widgets"


def test_reading_panel_screenshot(reading_module, sample_files, tmp_path, screenshots):
    from CollaGANImputeLib.model.weights import load_model
    from CollaGANImputeLib.reading.build import SessionSettings, create_session, find_studies

    study = tmp_path / "studies" / "BraTS-GLI-00001-000"
    study.mkdir(parents=True)
    for path in sample_files.values():
        sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 64:80], str(study / path.name))
    session = create_session(find_studies(study), SessionSettings(("t1gd",), per_class=2, seed=1, min_gap=3),
                             tmp_path / "session", load_model())
    reader = session.reader("Reader 1")
    reader.answer("real", 4, seconds=6.0)
    reader.answer("synthetic", 2, seconds=9.5)
    item = reader.current()

    from PySide6.QtCore import Qt

    panel = load_panel(READING_UI_FILE)
    QtWidgets.QApplication.setStyle("Fusion")
    find = panel.findChild
    find(QtWidgets.QLineEdit, "readingFolderLineEdit").setText(str(session.folder.name))
    find(QtWidgets.QLineEdit, "raterLineEdit").setText(reader.rater)
    find(QtWidgets.QPushButton, "startReadingButton").setText("Stop reading")
    find(QtWidgets.QLabel, "readingItemLabel").setText(f"Is this {reading_module.display_name(item.contrast)} image real or synthetic?")
    find(QtWidgets.QLabel, "readingProgressLabel").setText(reader.progress_text())
    confidence = find(QtWidgets.QComboBox, "confidenceComboBox")
    confidence.addItems(list(reading_module.READING_CONFIDENCE))
    find(QtWidgets.QComboBox, "readingContrastComboBox").addItem("T1Gd")
    find(QtWidgets.QProgressBar, "createProgressBar").hide()  # shown only while a session is being built (JobRunner)
    find(QtWidgets.QLabel, "readingStatusLabel").setText("R: real, S: synthetic, 1-5: confidence, Ctrl+Z: undo")
    panel.setAttribute(Qt.WA_DontShowOnScreen)
    panel.resize(440, 10)
    panel.show()
    panel.resize(440, panel.sizeHint().height())
    QtWidgets.QApplication.processEvents()
    grabbed = tmp_path / "panel.png"
    assert panel.grab().save(str(grabbed), "PNG")

    array = sitk.GetArrayFromImage(sitk.ReadImage(str(session.item_path(item))))[0]
    low, high = item.window
    grey = (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    with Image.open(grabbed) as shot:
        view = Image.fromarray(grey).resize((shot.height, shot.height), Image.BILINEAR)
        canvas = Image.new("RGB", (view.width + shot.width, shot.height), "black")
        canvas.paste(view, (0, 0))
        canvas.paste(shot.convert("RGB"), (view.width, 0))
    canvas.save(screenshots / "reading_session.png", "PNG")
    assert (screenshots / "reading_session.png").stat().st_size > 10_000 and reader.progress_text() == "3 / 4"
