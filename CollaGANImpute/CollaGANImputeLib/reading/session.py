"""A blinded reading session on disk, and one rater's way through it (no Qt: the Slicer panel is thin).

Folder layout (what a rater may see is kept apart from the truth):

    session.json      session id, contrasts, items (id, file, contrast, display window): no class, no study
    items/item_0001.nii ...   the images, written alike for both classes (see reading/build.py)
    key.json          organiser only: seed, settings, studies, and each item's class, study and slice
    answers/<rater>.json      one per rater, rewritten atomically after every answer

A rater's order is a permutation derived from the session seed and the rater's name, so it is the same
whenever the session is reopened and differs between raters. Answers are only ever appended, except
that undo removes that rater's last answer; every write replaces the whole file atomically, so a crash
between two answers loses nothing already given.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..io.atomic import write_text_atomic
from .stats import CLASSES

SESSION_FORMAT = "collagan-reading-session/1"
ANSWERS_FORMAT = "collagan-reading-answers/1"
SESSION_FILE, KEY_FILE, ITEMS_DIR, ANSWERS_DIR = "session.json", "key.json", "items", "answers"


@dataclass(frozen=True)
class Item:
    """What the rater's viewer needs about one image, and nothing that tells its class."""

    id: str
    file: str  # relative to the session folder
    contrast: str
    window: tuple[float, float]  # display window, the same rule for both classes


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`, or an InputError naming the file and what is wrong with it."""
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{what} '{path}' cannot be read as JSON: {error}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} '{path}' is not a JSON object")
    return value


def write_json(path: Path, value: dict) -> None:
    """A session file, written atomically (a crash leaves the previous version)."""
    write_text_atomic(path, json.dumps(value, indent=1) + "\n")


def rater_file_name(rater: str) -> str:
    """A file name for a rater's answers; the exact name is kept inside the file."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", rater.strip()).strip("_")
    if not slug:
        raise InputError(f"rater name {rater!r} is empty or has no letters or digits")
    return f"{slug}.json"


def rater_order(item_ids: list[str], session_id: str, rater: str) -> list[str]:
    """The rater's own shuffle of the items, fixed by the session id (itself derived from the seed and
    the items) and the rater's name; session.json never holds the seed, and the default seed is secret,
    so a rater cannot rebuild the key."""
    digest = hashlib.sha256(f"{session_id}\n{rater.strip()}".encode()).digest()
    permutation = np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(len(item_ids))
    return [item_ids[i] for i in permutation]


class Session:
    """A session folder opened for reading: checked, items listed. The key is read only when scoring."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"reading session folder '{self.folder}' does not exist")
        path = self.folder / SESSION_FILE
        if not path.is_file():
            raise InputError(f"'{self.folder}' is not a reading session folder: it has no {SESSION_FILE}")
        data = read_json(path, "reading session file")
        if data.get("format") != SESSION_FORMAT:
            raise InputError(f"'{path}' is not a CollaGAN reading session (format {data.get('format')!r}, expected {SESSION_FORMAT!r})")
        try:
            self.session_id: str = str(data["session_id"])
            self.mode: str = str(data["mode"])
            self.items = [Item(str(i["id"]), str(i["file"]), str(i["contrast"]), (float(i["window"][0]), float(i["window"][1])))
                          for i in data["items"]]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise InputError(f"reading session file '{path}' is incomplete or damaged ({type(error).__name__}: {error})") from None
        self.by_id = {item.id: item for item in self.items}
        if not self.items or len(self.by_id) != len(self.items):
            raise InputError(f"reading session file '{path}' lists no items, or one item twice")
        absent = [item.file for item in self.items if not (self.folder / item.file).is_file()]
        if absent:
            raise InputError(f"reading session '{self.folder}' lacks {len(absent)} item file(s), e.g. '{absent[0]}'")

    @property
    def contrasts(self) -> list[str]:
        """The contrasts shown, in the order items first name them."""
        return list(dict.fromkeys(item.contrast for item in self.items))

    def item_path(self, item: Item) -> Path:
        return self.folder / item.file

    def answers_path(self, rater: str) -> Path:
        return self.folder / ANSWERS_DIR / rater_file_name(rater)

    def protected_files(self) -> dict[Path, str]:
        """What no report may be written over or into: the session's own files, its key, its items and answers."""
        return {self.folder / SESSION_FILE: "the session file", self.folder / KEY_FILE: "the answer key",
                self.folder / ITEMS_DIR: "the items folder", self.folder / ANSWERS_DIR: "the answers folder"}

    def answer_files(self) -> dict[str, Path]:
        """Each rater's answers file, by the name stored in it; two files of one rater are refused."""
        folder = self.folder / ANSWERS_DIR
        files: dict[str, Path] = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            rater = load_answers(self, path)[0]
            if rater in files:  # scoring keeps one set of answers per rater, so one would be left out unseen
                raise InputError(f"answers files '{files[rater]}' and '{path}' both hold rater {rater!r}; keep one of them")
            files[rater] = path
        return files

    def key(self) -> dict:
        """Item id -> {"class", "study", "slice", ...}: the organiser's truth, checked against this session."""
        path = self.folder / KEY_FILE
        if not path.is_file():
            raise InputError(f"the answer key '{path}' is missing: scoring needs the organiser's {KEY_FILE} in the session folder")
        data = read_json(path, "answer key")
        if data.get("session_id") != self.session_id:
            raise InputError(f"answer key '{path}' belongs to session {data.get('session_id')!r}, not to this session {self.session_id!r}")
        truth = data.get("items")
        if not isinstance(truth, dict) or set(truth) != set(self.by_id) or any(t.get("class") not in CLASSES for t in truth.values()):
            raise InputError(f"answer key '{path}' does not give a class (real or synthetic) for exactly the items of the session")
        return truth

    def reader(self, rater: str) -> Reader:
        return Reader(self, rater)


def load_answers(session: Session, path: Path) -> tuple[str, list[dict]]:
    """(rater, answers) from an answers file, after checking it belongs to this session and its items."""
    data = read_json(path, "answers file")
    if data.get("format") != ANSWERS_FORMAT:
        raise InputError(f"'{path}' is not a reading-session answers file (format {data.get('format')!r})")
    if data.get("session_id") != session.session_id:
        raise InputError(f"answers file '{path}' belongs to another reading session ({data.get('session_id')!r}, "
                         f"this one is {session.session_id!r}); it was left untouched")
    answers = data.get("answers")
    if not isinstance(answers, list) or not isinstance(data.get("rater"), str):
        raise InputError(f"answers file '{path}' is damaged: it has no rater name or no list of answers")
    for number, answer in enumerate(answers, 1):
        if not isinstance(answer, dict):
            raise InputError(f"answers file '{path}' is damaged: answer {number} is {json.dumps(answer)[:40]}, "
                             "not a record with an item and a call")
    items = [a.get("item") for a in answers]
    unknown = [str(i) for i in items if i not in session.by_id]
    if unknown:
        raise InputError(f"answers file '{path}' names item(s) not in this session: {', '.join(unknown[:5])}")
    if len(set(items)) != len(items):
        raise InputError(f"answers file '{path}' answers one item twice")
    if any(a.get("call") not in CLASSES for a in answers):
        raise InputError(f"answers file '{path}' holds a call other than {' or '.join(CLASSES)}")
    return data["rater"], answers


class Reader:
    """One rater's progress: the next item, answer, undo. Every change is on disk before it returns."""

    def __init__(self, session: Session, rater: str) -> None:
        self.session, self.rater = session, rater.strip()
        self.path = session.answers_path(self.rater)
        self.order = rater_order([item.id for item in session.items], session.session_id, self.rater)
        self.answers: list[dict] = []
        if self.path.exists():
            stored_rater, self.answers = load_answers(session, self.path)
            if stored_rater != self.rater:
                raise InputError(f"answers file '{self.path}' holds rater {stored_rater!r}, not {self.rater!r}; "
                                 "choose a rater name that differs in its letters or digits")

    @property
    def answered(self) -> int:
        return len(self.answers)

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def finished(self) -> bool:
        return self.answered >= self.total

    def progress_text(self) -> str:
        return f"{min(self.answered + 1, self.total)} / {self.total}" if not self.finished else f"{self.total} / {self.total} (finished)"

    def current(self) -> Item | None:
        """The next unanswered item in this rater's order, or None when every item is answered."""
        done = {a["item"] for a in self.answers}
        return next((self.session.by_id[i] for i in self.order if i not in done), None)

    def answer(self, call: str, confidence: int | None = None, *, item_id: str | None = None, seconds: float | None = None) -> Item:
        """Record the call ('real' or 'synthetic') on the current item. `item_id`, when given, must be the
        item on screen, so a stale view never records an answer for the wrong image."""
        if call not in CLASSES:
            raise InputError(f"answer {call!r}: expected one of {', '.join(CLASSES)}")
        if confidence is not None and confidence not in range(1, 6):
            raise InputError(f"confidence {confidence!r}: expected 1 to 5, or none")
        item = self.current()
        if item is None:
            raise InputError(f"rater {self.rater!r} has answered every item of this session")
        if item_id is not None and item_id != item.id:
            raise InputError(f"item {item_id} is not the one to answer now ({item.id})")
        record = {"item": item.id, "call": call, "confidence": confidence,
                  "seconds": None if seconds is None else round(float(seconds), 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._write(self.answers + [record])
        return item

    def undo(self) -> dict | None:
        """Remove this rater's last answer (it becomes the current item again); None when there is none."""
        if not self.answers:
            return None
        last = self.answers[-1]
        self._write(self.answers[:-1])
        return last

    def _write(self, answers: list[dict]) -> None:
        """Replace the file atomically, after checking that nobody changed it since (another window open
        for the same rater would otherwise overwrite that window's answers)."""
        on_disk = load_answers(self.session, self.path)[1] if self.path.exists() else []
        if on_disk != self.answers:
            raise InputError(f"answers file '{self.path}' changed since it was opened (is the session open twice for "
                             f"{self.rater!r}?); nothing was written: reopen the session to continue")
        write_json(self.path, {"format": ANSWERS_FORMAT, "session_id": self.session.session_id, "rater": self.rater, "answers": answers})
        self.answers = answers
