"""`python -m bot` runs `pixelbot serve` (other subcommands: `python -m bot --help`)."""

import sys

from bot.cli import main

main(sys.argv[1:] or ["serve"], prog_name="pixelbot")
