"""python -m mstgan_cli.train --out runs/x4 --scale 4 ... (every TrainConfig field is a flag)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from .loop import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = json.loads if isinstance(default, dict) else type(default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(TrainConfig(**vars(args)))


if __name__ == "__main__":
    main()
