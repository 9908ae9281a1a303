"""`collagan-impute`: impute, train, evaluate, demo and info from a shell or Slicer's PythonSlicer.

Every subcommand calls the same library functions as the Slicer module. Bad input ends with one line
naming the file or contrast and the problem, exit code 2, and no output file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_CANCELLED, Cancelled, InputError, ModelError
from .calibrate import cmd_calibrate
from .evaluate import cmd_demo, cmd_evaluate
from .importance import cmd_importance
from .impute import cmd_batch, cmd_impute
from .reading import cmd_reading_session
from .train import cmd_cache, cmd_train


def cmd_info(argv: Sequence[str]) -> int:
    from ..model.model_card import bundled_weights
    from ..model.weights import load_model

    p = argparse.ArgumentParser(prog="collagan-impute info", description="Show a model card (checking the weights' sha256).")
    p.add_argument("weights", nargs="?", type=Path, default=None, help="default: the bundled model")
    args = p.parse_args(argv)
    model = load_model(args.weights or bundled_weights())
    print(json.dumps(model.card, indent=2))
    print(f"weights {model.weights_path}: sha256 verified", file=sys.stderr)
    return 0


COMMANDS = {"impute": cmd_impute, "train": cmd_train, "cache": cmd_cache, "evaluate": cmd_evaluate, "demo": cmd_demo, "info": cmd_info,
            "batch": cmd_batch, "importance": cmd_importance, "calibrate": cmd_calibrate,
            "reading-session": cmd_reading_session}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: collagan-impute {" + ",".join(COMMANDS) + "} ...\n"
              "  impute    impute a missing contrast of one study\n"
              "  train     train a model on a manifest, a folder of subject folders or a slice cache\n"
              "  cache     prepare every subject's training slices once, in one compact file for train\n"
              "  evaluate  impute each contrast of held-out subjects and score it\n"
              "  demo      impute a contrast of the bundled sample case\n"
              "  info      show a model card\n"
              "  batch     impute a missing contrast for every study in a folder (several processes or GPUs)\n"
              "  importance  rank the contrasts from redundant to indispensable (tumour-region quality, segmentation Dice)\n"
              "  calibrate  fit a model's error model (the 'calibrated' reliability map) and store it in its card\n"
              "  reading-session  create or score a blinded real-vs-synthetic reading session", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_BAD_INPUT
    try:
        code = COMMANDS[argv[0]](argv[1:])
        sys.stdout.flush()  # a reader that has gone away is found here, not at interpreter exit
        return code
    except BrokenPipeError:  # `collagan-impute info | head`: the reader stopped reading; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not fail again
        return EXIT_BROKEN_PIPE
    except (InputError, ModelError) as error:
        print(f"collagan-impute: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled as cancelled:
        print(f"collagan-impute: cancelled: {cancelled}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("collagan-impute: cancelled; no partial output was left", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
