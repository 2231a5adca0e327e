"""`python -m idface weights fetch|status`: the pretrained files the losses and metrics need.

    python -m idface weights fetch    # once, where the network allows: ArcFace, VGG19, AlexNet, TF-Inception
    python -m idface weights status   # what is on this machine and where (never downloads)

Files land where idface.weights looks first (torch hub's checkpoints/, facexlib's weights folder).
Exit code 1 when anything is still missing.
"""

from __future__ import annotations

import argparse
import json

from idface import weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "status"), help="fetch: download what is missing; status: only look")


def run(args: argparse.Namespace) -> int:
    found = weights.fetch_all(download=None if args.action == "fetch" else False)
    print(json.dumps(found, indent=1))
    return 1 if any(v.startswith("missing:") for v in found.values()) else 0
