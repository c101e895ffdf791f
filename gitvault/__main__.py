"""`python -m gitvault` is the `gitvault` command."""

from .cli import main

main()
