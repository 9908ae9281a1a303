"""Write the uniform mean of several trained generators' weights, with its card (model/weight_average.py).

    python benchmarks/weight_average.py --model A.safetensors --model B.safetensors --out soup/collagan_brats_one_missing.safetensors \
        [--description TEXT]

The result is scored like any other model (compare_models.py) before it can replace one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.model.weight_average import average_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="weights of one generator (repeat, at least twice)")
    parser.add_argument("--out", type=Path, required=True, help="where the averaged weights go (their card beside them)")
    parser.add_argument("--description", help="the card's description (default: the first model's)")
    args = parser.parse_args()
    print(f"wrote {average_models(args.model, args.out, args.description)}")


if __name__ == "__main__":
    main()
