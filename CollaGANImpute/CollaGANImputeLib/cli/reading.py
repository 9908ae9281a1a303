"""`collagan-impute reading-session create|report`: prepare blinded sessions in batch, score them without the GUI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.contrasts import KNOWN_CONTRASTS, display_name
from ..core.errors import EXIT_BAD_INPUT, InputError
from ..core.progress import ProgressReporter
from ..io.atomic import check_outputs
from ..io.series_recognition import match_contrast
from .options import add_device_option, add_overwrite_option, add_progress_option


def _create(argv: Sequence[str]) -> int:
    from ..inference.synthesis import select_device
    from ..model.weights import load_model
    from ..reading.build import SessionSettings, create_session, find_studies

    p = argparse.ArgumentParser(prog="collagan-impute reading-session create",
                                description="Sample, blind and write a visual-Turing-test reading session.")
    p.add_argument("--studies", required=True, type=Path, help="manifest.json (or a folder holding one), a folder of study folders, or one study folder")
    p.add_argument("--contrast", action="append", required=True, help="contrast to test (repeatable), e.g. t1gd")
    p.add_argument("--per-class", type=int, required=True, help="images per contrast per class (real, synthetic)")
    p.add_argument("--out", required=True, type=Path, help="new session folder")
    p.add_argument("--seed", type=int, help="sampling and blinding seed, to rebuild a session exactly (default: a secret one, "
                                            "recorded in key.json); raters who know it can rebuild the key")
    p.add_argument("--volumes", action="store_true", help="whole volumes (one per study) instead of axial slices")
    p.add_argument("--min-gap", type=int, default=5, help="slices of one study at least this far apart (default 5)")
    p.add_argument("--min-brain", type=float, default=0.5, help="a slice's brain area, relative to the study's largest (default 0.5)")
    p.add_argument("--synthetic", type=Path, help="folder of imputations named <study>_<contrast>_collagan.nii.gz; others are imputed now")
    p.add_argument("--weights", type=Path, help="model for imputing on the fly (default: the bundled model)")
    add_device_option(p)
    add_progress_option(p)
    args = p.parse_args(argv)
    contrasts = []
    for given in args.contrast:  # 't1ce' or 'T1Gd' mean the key 't1gd', as in file names
        key = match_contrast(given)
        if key is None:
            raise InputError(f"--contrast '{given}' names no known contrast ({', '.join(KNOWN_CONTRASTS)})")
        contrasts += [key] if key not in contrasts else []
    studies = find_studies(args.studies, args.synthetic)
    needs_model = any(c not in s.synthetic for s in studies for c in contrasts)
    model = load_model(args.weights, select_device(args.device)) if needs_model else None
    settings = SessionSettings(tuple(contrasts), args.per_class, args.seed, args.volumes, args.min_gap, args.min_brain)
    reporter = ProgressReporter("building the reading session", lines=args.progress == "lines", unit="volume")
    try:
        session = create_session(studies, settings, args.out, model, progress=lambda done, total, what: reporter.update(done, total))
    finally:
        reporter.close()
    print(f"wrote session {session.session_id} to {args.out}: {len(session.items)} items "
          f"({', '.join(display_name(c) for c in session.contrasts)}); keep key.json from the raters")
    return 0


def _report(argv: Sequence[str]) -> int:
    from ..reading.report import score_session, write_csv, write_report
    from ..reading.session import Session

    p = argparse.ArgumentParser(prog="collagan-impute reading-session report", description="Score a reading session's answers.")
    p.add_argument("session", type=Path, help="session folder (with key.json and answers/)")
    p.add_argument("--rater", action="append", default=[], help="only these raters (repeatable; default: every answers file)")
    p.add_argument("--csv", type=Path, help="write the table as CSV")
    p.add_argument("--report", type=Path, help="write a Markdown report (and its plot, same name with .png)")
    add_overwrite_option(p)
    args = p.parse_args(argv)
    session = Session(args.session)
    outputs = [*([args.csv] if args.csv else []), *([args.report, args.report.with_suffix(".png")] if args.report else [])]
    check_outputs(outputs, session.protected_files(), overwrite=args.overwrite)
    results = score_session(session, args.rater or None)
    for row in results.table():
        print("  ".join(f"{cell:<22}" if i < 2 else f"{cell:>14}" for i, cell in enumerate(row)))
    for contrast, method, kappa, items in results.agreements:
        if method:
            print(f"{method} ({contrast}): {kappa:.3f} over {items} items")
    for kind, path, write in (("CSV", args.csv, write_csv), ("report", args.report, write_report)):
        if path is not None:
            print(f"wrote {kind}: {write(results, path)}", file=sys.stderr)
    return 0


def cmd_reading_session(argv: Sequence[str]) -> int:
    """`reading-session create ...` or `reading-session report ...`."""
    commands = {"create": _create, "report": _report}
    if not argv or argv[0] not in commands:
        print("usage: collagan-impute reading-session {create,report} ... (-h for each)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_BAD_INPUT
    return commands[argv[0]](argv[1:])
