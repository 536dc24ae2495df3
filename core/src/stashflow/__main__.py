"""`python -m stashflow` runs the command line (works without the console script on PATH)."""

from .cli import main

main(prog_name="stashflow")
