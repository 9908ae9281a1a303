"""PySide6 stand-ins for Slicer's CTK and qMRML widgets, to load the module's .ui file outside Slicer.

Each Slicer class maps to a plain Qt class that looks alike (a collapsible button becomes a titled group
box, a node selector a combo box): enough to check the file's structure and names and to render the
README screenshots, not Slicer's widgets themselves. Shared by the tests of both modules' panels.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree

import pytest
from conftest import REPO

UI_FILE = REPO / "CollaGANImpute" / "Resources" / "UI" / "CollaGANImpute.ui"
READING_UI_FILE = UI_FILE.with_name("ReadingSession.ui")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed (pip install PySide6-Essentials)")
from PySide6.QtCore import Property, QFile  # noqa: E402
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


def load_panel(ui_file=UI_FILE):
    """A fresh panel from a module's .ui file, its Slicer widgets replaced by the stand-ins."""
    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    handle = QFile(str(ui_file))
    assert handle.open(QFile.ReadOnly)
    widget = StandInLoader().load(handle)
    handle.close()
    assert widget is not None, "the .ui file did not load"
    return widget


def ui_names(ui_file=UI_FILE) -> dict[str, str]:
    root = ElementTree.parse(ui_file).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}
