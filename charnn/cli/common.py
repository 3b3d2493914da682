"""What every charnn command shares: the one-line error exit and the option types."""
import sys

import click

POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Duration(click.ParamType):
    """A length of time: seconds as a number, or with a unit: 90s, 10m, 1.5h."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        scale = self.UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (seconds, or e.g. 90s, 10m, 1.5h)", param, ctx)
        if not (seconds > 0 and seconds < float("inf")):
            self.fail(f"{value!r} must be a positive, finite time", param, ctx)
        return seconds


DURATION = Duration()


def fail(message: str, code: int = 1):
    """Print `Error: message` to stderr and exit with `code` (no traceback: the input was wrong)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def say(message: str) -> None:
    """A progress or status line, to stderr (stdout stays for the text a user may pipe)."""
    click.echo(message, err=True)
