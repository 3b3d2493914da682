"""What every charnn command shares: the one-line error exit and the option types."""
import sys

import click

POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 1):
    """Print `Error: message` to stderr and exit with `code` (no traceback: the input was wrong)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def say(message: str) -> None:
    """A progress or status line, to stderr (stdout stays for the text a user may pipe)."""
    click.echo(message, err=True)
