"""The `jobctl` console script and `python -m jobctl`.

The CLI is imported inside `main()`, so a Ctrl-C while Python is still loading
typer and the commands exits 130 quietly, as one inside a command does
(typer turns that one into exit 130), instead of printing a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from jobctl.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
