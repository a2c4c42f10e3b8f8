"""The ``offer-ranker`` command line. Each command fills the one config model from an optional
``--config`` TOML file plus its flags, runs one stage, and ends with a summary of its outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from offer_ranker import __version__, console
from offer_ranker.config import Config, ConfigError, load_config
from offer_ranker.errors import OfferRankerError

PathArg = click.Path(path_type=Path)
ExistingDir = click.Path(path_type=Path, exists=True, file_okay=False)
config_option = click.option(
    "--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="TOML config file; flags given on the command line override it.",
)


def _errors_as_messages(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures (bad config, bad input data) end the command with a message, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except OfferRankerError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _config(config_file: Path | None, **sections: dict[str, Any]) -> Config:
    return load_config(config_file, sections)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="offer-ranker")
def main() -> None:
    """Offer propensity ranking: simulate or ingest logs, build features, train, evaluate, serve."""


def simulate_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--users", type=int, help="Distinct users over the period [default: 20000]."),
        click.option("--offers", type=int, help="Distinct offers over the period [default: 400]."),
        click.option("--days", type=int, help="Days of logs [default: 14]."),
        click.option("--seed", type=int, help="Random seed; same seed, same files [default: 0]."),
    ]):
        fn = option(fn)
    return fn


@main.command()
@click.option("--out", type=PathArg, required=True, help="Folder for the raw logs.")
@simulate_options
@config_option
@_errors_as_messages
def simulate(out: Path, config_file: Path | None, **flags: Any) -> None:
    """Write simulated raw logs (the five tables of the raw-log contract) plus ground truth."""
    cfg = _config(config_file, simulate=flags)
    _run_simulate(cfg, out)


@main.command()
@click.option("--raw", type=ExistingDir, required=True, help="Folder with <table>.parquet or .csv files.")
@click.option("--out", type=PathArg, required=True, help="Folder for the ingested tables and report.")
@config_option
@_errors_as_messages
def ingest(raw: Path, out: Path, config_file: Path | None) -> None:
    """Validate raw logs, quarantine bad rows, deduplicate and label impressions."""
    cfg = _config(config_file)
    _run_ingest(cfg, raw, out)


@main.command()
@click.option("--raw", type=ExistingDir, required=True,
              help="Raw log folder (ingested first, into OUT/ingested) or an ingested folder.")
@click.option("--out", type=PathArg, required=True, help="Folder for train.parquet, manifest.json, snapshot/.")
@config_option
@_errors_as_messages
def features(raw: Path, out: Path, config_file: Path | None) -> None:
    """Build point-in-time features: the training frame, the manifest and the online snapshot."""
    cfg = _config(config_file)
    _run_features(cfg, raw, out)


@main.command()
@click.option("--out", type=PathArg, default=Path("runs/quickstart"), show_default=True,
              help="Folder for everything the run writes.")
@simulate_options
@config_option
@_errors_as_messages
def quickstart(out: Path, config_file: Path | None, **flags: Any) -> None:
    """Run the whole pipeline on simulated data: simulate, ingest, build features."""
    cfg = _config(config_file, simulate=flags)
    _run_simulate(cfg, out / "raw")
    _run_ingest(cfg, out / "raw", out / "ingested")
    _run_features(cfg, out / "ingested", out / "features")
    console.err.print(f"\n[bold]quickstart done[/bold]: everything is under {out}")


def _run_simulate(cfg: Config, out: Path) -> None:
    from offer_ranker.simulate import simulate as run

    result = run(cfg.simulate, out, track=console.track)
    console.summary(
        f"simulate -> {out}",
        dict(result.paths),
        {
            "impressions": f"{result.impressions:,} in {result.requests:,} requests",
            "clicks / conversions": f"{result.clicks:,} / {result.conversions:,}",
            "users / offers": f"{result.users:,} / {result.offers:,}",
            "seconds": f"{result.seconds:.1f}",
        },
    )


def _run_ingest(cfg: Config, raw: Path, out: Path) -> None:
    from offer_ranker.ingest import ingest as run

    report = run(raw, out, cfg.ingest, track=console.track)
    outputs = {name: out / entry["output"] for name, entry in report["tables"].items()}
    outputs |= {f"quarantine/{name}": out / entry["quarantine"]
                for name, entry in report["tables"].items() if "quarantine" in entry}
    outputs["report"] = out / "ingest_report.json"
    facts = {
        name: (f"read {t['read']:,}, accepted {t['accepted']:,}, duplicates {t['duplicates']:,}, "
               f"quarantined {t['quarantined']:,}"
               + (f" {t['quarantined_by_reason']}" if t["quarantined"] else ""))
        for name, t in report["tables"].items()
    }
    labels = report["labels"]
    facts["labelled"] = (f"{labels['impressions']:,} impressions, click rate {labels['click_rate']}, "
                         f"conversion rate {labels['conversion_rate']}")
    facts["seconds"] = report["seconds"]
    console.summary(f"ingest -> {out}", outputs, facts)


def _run_features(cfg: Config, source: Path, out: Path) -> None:
    from offer_ranker.build_features import build_features

    result = build_features(source, out, cfg, track=console.track)
    snapshot = out / "snapshot"
    console.summary(
        f"features -> {out}",
        {"train": result.train, "manifest": result.manifest, "snapshot": snapshot},
        {"rows": f"{result.rows:,} impressions x {result.features} features",
         "seconds": f"{result.seconds:.1f}"},
    )
