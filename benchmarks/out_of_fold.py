"""Half-data fold models for out-of-fold landmark offsets, trained with a model's own recipe and length (issue 18).

The landmark offsets correct a model's intensity bias on subjects it never saw, so they must be fitted on
imputations of unseen subjects by models that are biased as it is: trained as it was, for as long. Folds: the
model card's training subjects by alternate position in its list (fold a: 0, 2, 4, ...; fold b: 1, 3, 5, ...).
Each fold repeats the card's recorded phases on its half: the first phase's command (the card's
`training.initialised_from`) stopped at the step where the model's own first phase stopped, then the card's
own command from that checkpoint (`--init`). Data, run folder, name and description are this script's; every
other option is the recorded one. An interrupted phase resumes from its checkpoint; a finished one (its exported
card records the phase's full length) is skipped, so a partial export made to keep a stopped run's state is not.
The rule that uses the fold models is in docs/training.md ("Offsets fitted out of fold").

    python benchmarks/out_of_fold.py --fold a --runs runs/oof_bundled   # then --fold b; one thread each, side by side
    python benchmarks/intensity_mapping.py --data ../shared/data/training.json \\
        --fold-weights runs/oof_bundled/fold_a/phase2/collagan_brats_oof_a.safetensors \\
        --fold-weights runs/oof_bundled/fold_b/phase2/collagan_brats_oof_b.safetensors --stem intensity_mapping_out_of_fold_bundled
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.training.config import TrainConfig  # noqa: E402
from folds import fold_subjects  # noqa: E402
from learning_curve import train, write_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "CollaGANImpute" / "Resources" / "Models" / "collagan_brats.json"
# Set per fold by this script; everything else comes from the recorded command.
OWN = {"--data", "--out", "--steps", "--init", "--name", "--description", "--progress", "--validation", "--resume"}


def recorded_options(command: str) -> list[str]:
    """A recorded train command's options without those this script sets (flag and value alike)."""
    words = shlex.split(command)
    start = words.index("train") + 1
    kept, skip = [], False
    for word in words[start:]:
        if word.startswith("--"):
            skip = word in OWN
        if not skip:
            kept.append(word)
    return kept


def finished(weights: Path, steps: int) -> bool:
    """Whether `weights` is a phase's export after all its `steps` (not one of a run stopped part way)."""
    card = weights.with_suffix(".json")
    return card.exists() and json.loads(card.read_text(encoding="utf-8"))["training"]["steps"] >= steps


def phase2_start(phase1: Path, first: dict) -> Path:
    """What phase 2 starts from: phase 1's checkpoint, or else its export. The export holds the generator alone, which
    is all a first phase with neither adversarial nor classification losses trained (its discriminator never stepped:
    it is still the seeded initial one, which phase 2 builds again); so a fold whose checkpoint was lost continues
    from the kept export."""
    checkpoint = phase1 / "checkpoint.safetensors"
    if checkpoint.exists() or TrainConfig.from_dict(first["config"]).weights.uses_discriminator:
        return checkpoint
    return phase1 / "phase1.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", choices=("a", "b"), required=True)
    parser.add_argument("--runs", type=Path, required=True, help="fold_a/ and fold_b/ are made (or resumed) here")
    parser.add_argument("--card", type=Path, default=CARD, help="the model whose recipe the folds repeat (default: the bundled one)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    args = parser.parse_args(argv)
    training = json.loads(args.card.read_text(encoding="utf-8"))["training"]
    first = training["initialised_from"]
    if not first or first.get("initialised_from"):
        parser.error(f"{args.card}: expected a model trained in two phases (a first phase, then its own command with --init)")
    validation = training["validation_subjects"]
    subjects = fold_subjects(training["train_subjects"], args.fold)
    run = (args.runs / f"fold_{args.fold}").resolve()
    manifest = write_manifest(run, args.data.resolve(), subjects + validation)
    phase1, phase2 = run / "phase1", run / "phase2"
    name = f"{args.card.stem}_oof_{args.fold}"
    what = f"out-of-fold evidence for the landmark offsets of {args.card.stem}: fold {args.fold} ({len(subjects)} subjects)"
    code = REPO / "CollaGANImpute"
    if not finished(phase1 / "phase1.safetensors", int(first["steps"])):
        train(phase1, "phase1", manifest, validation, int(first["steps"]), recorded_options(first["commands"][0]),
              f"{what}, first phase", code)
    if not finished(phase2 / f"{name}.safetensors", int(training["steps"])):
        options = [*recorded_options(training["commands"][0]), "--init", str(phase2_start(phase1, first))]
        train(phase2, name, manifest, validation, int(training["steps"]), options, what, code)
    print(f"fold {args.fold}: {phase2 / f'{name}.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
