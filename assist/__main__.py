"""`python -m assist` runs the CLI."""

from .cli import main

main()
