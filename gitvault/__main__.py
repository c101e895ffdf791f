"""`python -m gitvault` is the `gitvault` command (through the daemon when one runs)."""

from gitvault.console import main

main()
