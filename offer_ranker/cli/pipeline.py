"""The offline pipeline's commands: simulate, ingest, features, train, score, evaluate, explain, and
quickstart, which runs them all on simulated data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from offer_ranker import console
from offer_ranker.cli import steps
from offer_ranker.cli.options import (
    ExistingDir,
    config,
    config_option,
    errors_as_messages,
    features_option,
    judge_options,
    out_option,
    simulate_options,
    time_option,
    truth_option,
)


@click.command()
@out_option("Folder for the raw logs.")
@simulate_options
@config_option
@errors_as_messages
def simulate(out: Path, config_file: Path | None, **flags: Any) -> None:
    """Write simulated raw logs (the five tables of the raw-log contract) plus ground truth."""
    steps.simulate(config(config_file, simulate=flags), out)


@click.command()
@click.option("--raw", type=ExistingDir, required=True, help="Folder with <table>.parquet or .csv files.")
@out_option("Folder for the ingested tables and report.")
@config_option
@errors_as_messages
def ingest(raw: Path, out: Path, config_file: Path | None) -> None:
    """Validate raw logs, quarantine bad rows, deduplicate and label impressions."""
    steps.ingest(config(config_file), raw, out)


@click.command()
@click.option("--raw", type=ExistingDir, required=True,
              help="Raw log folder (ingested first, into OUT/ingested) or an ingested folder.")
@out_option("Folder for train.parquet, manifest.json, snapshot/.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Where the SQL runs: DuckDB in this process, or Apache Spark (the [spark] settings; "
                   "SPARK_REMOTE for Spark Connect). The outputs are the same.")
@config_option
@errors_as_messages
def features(raw: Path, out: Path, engine: str, config_file: Path | None) -> None:
    """Build point-in-time features: the training frame, the manifest and the online snapshot."""
    steps.features(config(config_file), raw, out, engine)


@click.command()
@features_option
@time_option("--train-until", "train_until", "Train on impressions before this ISO 8601 time [default: the first "
             "80% of the time range].")
@click.option("--engine", type=click.Choice(["lightgbm", "xgboost", "xgboost-spark"]),
              help="[default: lightgbm] xgboost-spark: XGBoost trained on Spark ([spark] settings).")
@click.option("--objective", type=click.Choice(["clicks", "conversions", "revenue"]), help="[default: clicks]")
@click.option("--tune", "tune_trials", type=int, help="Optuna trials for the ranker [default: 0, no tuning].")
@config_option
@errors_as_messages
def train(features_dir: Path, config_file: Path | None, **flags: Any) -> None:
    """Train the ranker, the calibrated click model and the conversion model; save the bundle.

    Prints the bundle's tag (offer_ranker:<version>) on stdout.
    """
    click.echo(steps.train(config(config_file, train=flags), features_dir))


@click.command()
@judge_options
@out_option("Parquet file for the scores.")
@time_option("--from", "start", "Score impressions from this ISO 8601 time on [default: all].")
@errors_as_messages
def score(tag: str, features_dir: Path, out: Path, start: datetime | None) -> None:
    """Write request_id, offer_id, score and p_click (at the logged slot) for every impression."""
    from offer_ranker.model.predict import score_file
    from offer_ranker.model.registry import load

    path, rows = score_file(load(tag), features_dir, out, start)
    console.summary(f"score -> {path}", {"scores": path}, {"impressions": f"{rows:,}"})


@click.command()
@judge_options
@out_option("Folder for metrics.json and report.html.")
@truth_option
@config_option
@errors_as_messages
def evaluate(tag: str, features_dir: Path, out: Path, truth: Path | None, config_file: Path | None) -> None:
    """Evaluate a bundle on the impressions after its training window, against the baselines."""
    steps.evaluate(config(config_file), tag, features_dir, out, truth)


@click.command()
@judge_options
@out_option("Folder for report.html and explanation.json.")
@truth_option
@config_option
@errors_as_messages
def explain(tag: str, features_dir: Path, out: Path, truth: Path | None, config_file: Path | None) -> None:
    """SHAP report for stakeholders: drivers, dependence, segments, worked examples, business value."""
    steps.explain(config(config_file), tag, features_dir, out, truth)


@click.command()
@out_option("Folder for everything the run writes.", default=Path("runs/quickstart"), show_default=True)
@simulate_options
@config_option
@errors_as_messages
def quickstart(out: Path, config_file: Path | None, **flags: Any) -> None:
    """Run the whole pipeline on simulated data: simulate, ingest, features, train, evaluate,
    explain, promote to production; write an example /rank request."""
    cfg = config(config_file, simulate=flags)
    steps.simulate(cfg, out / "raw")
    steps.ingest(cfg, out / "raw", out / "ingested")
    steps.features(cfg, out / "ingested", out / "features")
    tag = steps.train(cfg, out / "features")
    truth = out / "raw" / "ground_truth.parquet"
    steps.evaluate(cfg, tag, out / "features", out / "evaluation", truth)
    steps.explain(cfg, tag, out / "features", out / "explanation", truth)
    steps.promote(cfg, tag)
    request = steps.example_request(out / "features", out / "request.json")
    for line in steps.next_steps(out, tag, request):
        console.say(line)


COMMANDS = (simulate, ingest, features, train, score, evaluate, explain, quickstart)

