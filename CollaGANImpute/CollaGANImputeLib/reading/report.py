"""Scoring a reading session against its key: a table per rater and contrast, CSV, Markdown and a PNG plot."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..core.contrasts import display_name
from ..core.errors import InputError
from ..io.atomic import write_text_atomic
from ..io.montage import write_png
from .session import Session, load_answers
from .stats import INTERVAL_METHOD, TEST_METHOD, Score, agreement, score

ALL = "all"
POOLED = "all raters (pooled)"


@dataclass
class Results:
    """A scored session: each rater's scores per contrast and pooled, and the raters' agreement."""

    session_id: str
    raters: list[str]
    scores: list[Score]
    agreements: list[tuple[str, str, float, int]]  # (contrast, method, kappa, items)

    def table(self) -> list[list[str]]:
        """Rows of text for a table: the header, then one row per score."""
        def share(value: float) -> str:
            return "-" if math.isnan(value) else f"{100 * value:.1f} %"

        rows = [["Rater", "Contrast", "Items", "Synthetic called real", "Real called real", "Accuracy", "95 % CI", "p"]]
        for s in self.scores:
            rows.append([s.rater, label(s.contrast), str(s.items), share(s.synthetic_called_real), share(s.real_called_real),
                         share(s.accuracy), "-" if math.isnan(s.ci_low) else f"{100 * s.ci_low:.1f}-{100 * s.ci_high:.1f} %",
                         "-" if math.isnan(s.p_value) else f"{s.p_value:.3g}"])
        return rows


def label(contrast: str) -> str:
    """A contrast's name in tables, 'All contrasts' for the pooled rows."""
    return "All contrasts" if contrast == ALL else display_name(contrast)


def score_session(session: Session, raters: list[str] | None = None) -> Results:
    """Scores of each rater (and of all pooled, with two or more) per contrast and overall, and agreement."""
    truth = session.key()
    if raters:
        calls = {}
        for rater in raters:
            path = session.answers_path(rater)
            if not path.is_file():
                raise InputError(f"rater {rater!r} has no answers file in this session (expected '{path}')")
            stored, answers = load_answers(session, path)
            calls[stored] = {a["item"]: a["call"] for a in answers}
    else:
        calls = {rater: {a["item"]: a["call"] for a in load_answers(session, path)[1]} for rater, path in session.answer_files().items()}
    if not any(calls.values()):
        raise InputError(f"no rater has answered an item of the session in '{session.folder}' yet")
    contrasts = [*session.contrasts, ALL]

    def pairs(rater_calls: dict, contrast: str) -> list[tuple[str, str]]:
        return [(truth[i]["class"], c) for i, c in rater_calls.items() if contrast == ALL or truth[i]["contrast"] == contrast]

    scores = [score(rater, contrast, pairs(calls[rater], contrast)) for rater in calls for contrast in contrasts]
    agreements = []
    if len(calls) >= 2:
        scores += [score(POOLED, contrast, [p for rater in calls for p in pairs(calls[rater], contrast)]) for contrast in contrasts]
        for contrast in contrasts:
            items = [i.id for i in session.items if contrast == ALL or i.contrast == contrast]
            agreements.append((contrast, *agreement(calls, items)))
    return Results(session.session_id, list(calls), scores, agreements)


def write_csv(results: Results, path: str | Path) -> Path:
    """One row per rater and contrast, every score as a column, written atomically."""
    buffer = io.StringIO()
    fields = list(results.scores[0].as_dict())
    writer = csv.DictWriter(buffer, fieldnames=["session_id", *fields], lineterminator="\n")
    writer.writeheader()
    for s in results.scores:
        writer.writerow({"session_id": results.session_id, **s.as_dict()})
    write_text_atomic(path, buffer.getvalue())
    return Path(path)


def write_plot(results: Results, path: str | Path) -> Path:
    """Accuracy with its 95 % interval per rater and contrast, chance at 50 % (Pillow: no extra dependency)."""
    scores = [s for s in results.scores if s.items]
    row_height, left, width = 22, 230, 640
    image = Image.new("RGB", (width, 40 + row_height * len(scores) + 30), "white")
    draw = ImageDraw.Draw(image)
    plot_width = width - left - 20

    def x(value: float) -> float:
        return left + value * plot_width

    draw.text((10, 8), "Accuracy telling real from synthetic (95 % Clopper-Pearson interval)", fill="black")
    top = 34
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line([(x(tick), top - 4), (x(tick), top + row_height * len(scores))], fill="red" if tick == 0.5 else "#cccccc")
        draw.text((x(tick) - 10, top + row_height * len(scores) + 4), f"{int(tick * 100)} %", fill="black")
    for row, s in enumerate(scores):
        y = top + row * row_height + row_height / 2
        draw.text((10, y - 6), f"{s.rater[:22]} - {label(s.contrast)}", fill="black")
        draw.line([(x(s.ci_low), y), (x(s.ci_high), y)], fill="#1f4e9c", width=2)
        draw.ellipse([x(s.accuracy) - 4, y - 4, x(s.accuracy) + 4, y + 4], fill="#1f4e9c")
    return write_png(image, path)


def write_report(results: Results, path: str | Path) -> Path:
    """A Markdown report with the table, agreement, methods, and the plot saved beside it (same stem, .png)."""
    path = Path(path)
    plot = write_plot(results, path.with_suffix(".png"))
    table = results.table()
    lines = [f"# Visual Turing test: session {results.session_id}", "",
             f"Raters: {', '.join(results.raters)}.", "",
             "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if results.agreements:
        lines += ["", "## Agreement between raters", ""]
        lines += [f"- {label(contrast)}: {method} = {kappa:.3f} over {items} items" if method else f"- {label(contrast)}: no item answered by every rater"
                  for contrast, method, kappa, items in results.agreements]
    lines += ["", "## Methods", "",
              "Accuracy is the share of answered items whose class the rater called correctly; 50 % is chance, "
              "so an accuracy whose interval includes 50 % means the rater could not tell synthetic from real images. "
              f"Interval: {INTERVAL_METHOD}. p: {TEST_METHOD}. Agreement: Cohen's kappa (two raters) or Fleiss' kappa "
              "(three or more), over the items every rater answered. Pooled rows treat all raters' answers as one sample, "
              "although answers of different raters on the same item are not independent.", "",
              f"![Accuracy per rater and contrast]({plot.name})", ""]
    write_text_atomic(path, "\n".join(lines))
    return path
