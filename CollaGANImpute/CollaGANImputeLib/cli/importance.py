"""`collagan-impute importance`: rank the contrasts from redundant to indispensable over a data set."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.contrasts import display_name
from ..core.errors import InputError
from .options import add_data_option, add_device_option, add_overwrite_option, add_progress_option

SUBJECT_FIELD = "{subject}"


def label_files(data: Path, names: Sequence[str], pattern: str | None) -> dict[str, Path] | None:
    """Each subject's label map: from `pattern` ('{subject}' is replaced by the subject's name), else from
    the manifest's per-subject "labels" entries (relative to the subject's folder, like its contrasts),
    else None: the analysis then uses the enhancement proxy."""
    from ..preparation.data import manifest_studies

    if pattern is not None:
        if SUBJECT_FIELD not in pattern:
            raise InputError(f"--labels '{pattern}' has no {SUBJECT_FIELD} placeholder for the subject's name")
        files = {name: Path(pattern.replace(SUBJECT_FIELD, name)) for name in names}
        absent = [f"'{path}' ({name})" for name, path in files.items() if not path.is_file()]
        if absent:
            raise InputError(f"--labels: no label map {', '.join(absent)}")
        return files
    manifest = data / "manifest.json" if data.is_dir() else data
    if not manifest.is_file():
        return None
    listed = {name: entry["labels"] for name, entry in manifest_studies(manifest, ["labels"]).items() if "labels" in entry}
    return {name: listed[name] for name in names if name in listed} or None


def cmd_importance(argv: Sequence[str]) -> int:
    from ..analysis.importance import analyse_subjects
    from ..analysis.importance_report import report_paths, write_report
    from ..core.progress import ProgressReporter
    from ..inference.synthesis import select_device
    from ..io.atomic import check_outputs
    from ..model.weights import load_model
    from ..preparation.data import discover_subjects, only_subjects
    from ..preparation.regions import CONVENTIONS
    from ..preparation.segmenters import load_segmenter

    p = argparse.ArgumentParser(
        prog="collagan-impute importance",
        description="Impute each contrast from the others, measure what is lost over the brain and in the tumour "
                    "(and, with a segmenter, in its Dice), and rank the contrasts from redundant to indispensable.")
    add_data_option(p)
    p.add_argument("--weights", type=Path, help="model .safetensors with its .json card (default: the bundled model)")
    p.add_argument("--subject", action="append", default=[], help="analyse only these subjects (repeatable)")
    p.add_argument("--labels", metavar="PATTERN",
                   help="tumour label map per subject, e.g. 'labels/{subject}-seg.nii.gz' (default: the manifest's per-subject "
                        "\"labels\" entries; without any, the enhancement proxy is the tumour region)")
    p.add_argument("--label-convention", choices=("auto", *CONVENTIONS), default="auto",
                   help="BraTS labels: auto (2015-2021 when label 4 occurs, else 2023), brats2021 or brats2023")
    p.add_argument("--segmenter", metavar="SPEC",
                   help="'threshold' (crude built-in demonstration), a command line with {output} and contrast placeholders "
                        "such as {t1gd}, or a Python 'package.module:function' / 'file.py:function' (your own code is run)")
    p.add_argument("--out", type=Path, default=Path("importance"), help="folder for importance.json, .csv, .md and .png")
    add_device_option(p)
    p.add_argument("--batch-size", type=int, default=8)
    add_progress_option(p)
    add_overwrite_option(p)
    args = p.parse_args(argv)
    check_outputs(report_paths(args.out).values(), overwrite=args.overwrite)
    model = load_model(args.weights, select_device(args.device))
    subjects = only_subjects(discover_subjects(args.data, model.contrasts), args.subject, args.data)
    labels = label_files(args.data, [s.name for s in subjects], args.labels)
    segmenter = load_segmenter(args.segmenter) if args.segmenter else None
    reporter = ProgressReporter("contrast importance", lines=args.progress == "lines", unit="step")
    try:
        report = analyse_subjects(model, subjects, labels=labels, convention=None if args.label_convention == "auto" else args.label_convention,
                                  segmenter=segmenter, batch_size=args.batch_size,
                                  progress=lambda done, total, stage: reporter.update(done, total))
    finally:
        reporter.close()
    report.notes.insert(0, "made by: collagan-impute importance " + " ".join(shlex.quote(a) for a in argv))
    paths = write_report(report, args.out)
    for row in report.table():
        print("  ".join(f"{cell:<10}" for cell in row[:3]) + "  " + "  ".join(row[4:]))
    print(f"ranking, redundant to indispensable: {' < '.join(display_name(k) for k in report.ranking)}")
    if "t1gd" in report.ranking:
        print(report.place("t1gd"))
    print(f"score: {report.score_definition}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print("wrote " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    return 0
