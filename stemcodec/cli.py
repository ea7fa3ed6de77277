"""`stemcodec <command> ...`: the same commands as `python -m stemcodec.<command>`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "render": ("stemcodec.corpus.render", "render scores into a multitrack corpus of exact stems"),
    "prepare": ("stemcodec.corpus.prepare", "separate and encode songs into a token cache"),
    "texture": ("stemcodec.corpus.texture",
                "notes per second and polyphony of rendered corpora (their <slot>.mid)"),
    "generate": ("stemcodec.generate", "generate stems with a trained model"),
    "launch": ("stemcodec.training.launch",
               "accelerate launch for the trainers: clean stops, their exit codes, no traceback"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: stemcodec COMMAND [ARGS...]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\n`stemcodec COMMAND --help` shows a command's options.")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("stemcodec"):
            print(f"error: '{name}' is not available in this version", file=sys.stderr)
            return 2
        raise
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
