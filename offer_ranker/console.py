"""Progress bars and the end-of-command summary, on stderr so stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
Track = Callable[[Iterable[T], str, int], Iterable[T]]

err = Console(stderr=True)


def no_track(items: Iterable[T], description: str, total: int) -> Iterable[T]:
    """The default for library calls: no progress output."""
    return items


def track(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    """A progress bar on stderr for a long step."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _size(path: Path) -> str:
    if path.is_dir():
        n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    elif path.exists():
        n = path.stat().st_size
    else:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def summary(title: str, outputs: dict[str, Path], facts: dict[str, object] | None = None) -> None:
    """Print where a command's outputs went, with sizes, and a few headline facts.

    Plain lines rather than a table: full paths must survive narrow terminals and CI logs.
    """
    err.print(f"[bold]{title}[/bold]", highlight=False)
    width = max((len(name) for name in outputs), default=0)
    for name, path in outputs.items():
        err.print(f"  {name:<{width}}  {path}  ({_size(Path(path))})", highlight=False, soft_wrap=True)
    for key, value in (facts or {}).items():
        err.print(f"  {key}: {value}", highlight=False, soft_wrap=True)


def table(header: list[str], rows: list[list[object]]) -> None:
    """A table on stdout, never wrapped: every row stays on one line however narrow the terminal,
    so lines can be grepped and cells copied."""
    import sys

    from rich.table import Table
    from rich.text import Text

    t = Table(*header, box=None, show_edge=False, pad_edge=False, header_style="bold", highlight=False)
    for row in rows:
        t.add_row(*(Text(str(cell)) for cell in row))
    width = Console(width=100_000).measure(t).maximum
    Console(file=sys.stdout, width=width, highlight=False).print(t)


def say(text: str) -> None:
    """A line on stderr as it is: no markup, no wrapping (a printed command must stay copyable)."""
    err.print(text, markup=False, highlight=False, soft_wrap=True)
