"""What every charnn command shares: the one-line error exit."""
import sys

import click


def fail(message: str, code: int = 1):
    """Print `Error: message` to stderr and exit with `code` (no traceback: the input was wrong)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
