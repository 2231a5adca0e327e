"""`python -m idface COMMAND ...`: one entry point, one module per command.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`. Errors a user can act
on (IdfaceError) are printed as one line on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "identity": ("idface.identity.cli", "compare the faces in two photos with every available recognizer"),
    "parse": ("idface.faces.cli", "parse a face photo into a 19-class label map"),
    "generate": ("idface.generate_cli", "generate a face from a mask, a style photo and an identity photo"),
    "fit": ("idface.fitting.cli", "tune a private copy of the generator to one face photo (pivotal tuning)"),
    "conceal": ("idface.conceal.cli", "impersonation / dodging against face recognition"),
    "prepare": ("idface.training.prepare", "convert the CelebAMask-HQ release into training data"),
    "train": ("idface.training.train", "train the generator (plain or under accelerate launch)"),
    "eval": ("idface.evaluation.evaluate", "evaluate a checkpoint on the test split"),
    "bench": ("idface.bench", "benchmark the networks on this machine"),
    "weights": ("idface.weights_cli", "fetch (once) or list the pretrained files the losses and metrics need"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m idface", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from idface.errors import IdfaceError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m idface {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except IdfaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
