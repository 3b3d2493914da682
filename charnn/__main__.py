"""`python -m charnn` runs the command line."""
from .cli import main

main(prog_name="charnn")
