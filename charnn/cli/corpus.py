"""`charnn corpus`: list, download and build training corpora (a thin layer over charnn.data.corpora)."""
from __future__ import annotations

import os
import sys

import click

from ..data import corpora
from ..errors import CharnnError
from .common import CONTEXT, POSITIVE
from .common import fail as _fail
from .common import say as _say


@click.group(context_settings=CONTEXT)
def corpus():
    """List, download and build training corpora.

    Known corpora are listed in corpora/registry.json (or $CHARNN_CORPUS_REGISTRY): source URL,
    license, and the SHA-256 of the finished text. `charnn train` finds NAME.txt in
    $CHARNN_CORPORA, ./corpora or ../shared/corpora.

    \b
    Examples:
      charnn corpus list
      charnn corpus get shakespeare
      charnn corpus build linux-6.1.192/kernel -o corpora/kernel.txt --ext .c --ext .h --max-bytes 10000000
    """


@corpus.command(name="list")
def list_():
    """Show the registered corpora and where each is present locally.

    \b
    Example:
      charnn corpus list
    """
    try:
        specs = corpora.load_registry()
    except CharnnError as e:
        _fail(str(e))
    width = max(len(name) for name in specs)
    for spec in specs.values():
        path = corpora.locate(spec)
        where = f"present: {path}" if path else f"not present: run `charnn corpus get {spec.name}`"
        click.echo(f"{spec.name:<{width}}  {spec.bytes:>11,} bytes  {where}")
        click.echo(f"{'':<{width}}  {spec.description}")
        click.echo(f"{'':<{width}}  license: {spec.license}")
        click.echo(f"{'':<{width}}  source: {spec.source}")
        click.echo(f"{'':<{width}}  url: {spec.url}")


@corpus.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Download and rebuild even if a copy with the right SHA-256 is present.")
@click.option("--from", "source", type=click.Path(), default=None,
              help="Build from this local copy of the download (the file, the archive, or its extracted root folder) instead of the network.")
@click.option("--quiet", is_flag=True, help="No progress or result output; errors only.")
def get(name, force, source, quiet):
    """Download corpus NAME, build corpora/NAME.txt and check its SHA-256.

    Does nothing if a copy with the registry's SHA-256 is already present (see `charnn corpus
    list`). The text is written to a temporary file and renamed into place only when its SHA-256
    matches, so a failed or interrupted run never leaves a wrong corpora/NAME.txt behind.

    \b
    Examples:
      charnn corpus get shakespeare
      charnn corpus get linux --from ~/Downloads/linux-6.1.192.tar.xz
    """
    def progress(length):
        return click.progressbar(length=length, label=f"downloading {name} ({length / 1e6:,.1f} MB)",
                                 file=sys.stderr)

    try:
        result = corpora.get_corpus(name, force=force, source=source,
                                    progress=None if quiet else progress, log=None if quiet else _say)
    except KeyboardInterrupt:
        _fail(f"interrupted; nothing written for {name}", 130)
    except CharnnError as e:
        _fail(str(e))
    if quiet:
        return
    if not result.built:
        click.echo(f"{name}: {result.path} is already present and its sha256 matches; nothing to do"
                   + ("" if result.path == os.path.join("corpora", result.spec.filename) else
                      f" (--force builds corpora/{result.spec.filename} anyway)"))
        return
    report = result.report
    files = "" if result.spec.build["type"] == "file" else f"{len(report.files)} files, "
    click.echo(f"built {result.path}: {files}{report.bytes:,} bytes, sha256 {report.sha256} (matches the registry)")


@corpus.command()
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="The text file to write.")
@click.option("--ext", "exts", multiple=True, required=True, help="Take files whose names end with this (repeatable): --ext .c --ext .h")
@click.option("--max-bytes", type=POSITIVE, default=None, help="Stop before the first file that would push the total past this.")
def build(directory, output, exts, max_bytes):
    """Concatenate the files under DIR ending in --ext into one UTF-8 text.

    Files are taken in the byte order of their path relative to DIR (as `LC_ALL=C sort` orders
    them), without separators, until the next would pass --max-bytes. Files that are not valid
    UTF-8 are skipped with a warning. Works offline on any checkout; prints the SHA-256.

    \b
    Examples:
      charnn corpus build ~/src/linux-6.1.192/kernel -o corpora/kernel.txt --ext .c --ext .h --max-bytes 10000000
      charnn corpus build ~/notes -o notes.txt --ext .md
    """
    try:
        report = corpora.build_corpus(directory, output, exts, max_bytes)
    except KeyboardInterrupt:
        _fail(f"interrupted; nothing written to {output}", 130)
    except CharnnError as e:
        _fail(str(e))
    for path, reason in report.skipped:
        click.echo(f"warning: skipped {path}: {reason}", err=True)
    click.echo(f"wrote {report.path}: {len(report.files)} files, {report.bytes:,} bytes, sha256 {report.sha256}")
    if report.files:
        click.echo(f"first {report.files[0]}, last {report.files[-1]}")
    if report.stopped_before:
        click.echo(f"stopped before {report.stopped_before} (--max-bytes {max_bytes:,}): "
                   f"{report.left_out} file(s) left out")
    if report.skipped:
        click.echo(f"skipped {len(report.skipped)} file(s) that are not UTF-8 or not readable")
