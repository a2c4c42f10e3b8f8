"""The ``offer-ranker`` command line. Each command fills the one config model from an optional
``--config`` TOML file plus its flags, runs one stage, and ends with a summary of its outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
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


def _iso(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 timestamp such as 2026-01-15T00:00:00, got {value!r}") from None


features_option = click.option("--features", "features_dir", type=ExistingDir, required=True,
                               help="Output folder of `offer-ranker features`.")
model_option = click.option("--model", "tag", default="latest", show_default=True,
                            help="Bundle tag in the BentoML model store (offer_ranker:<version>, or a version).")


@main.command()
@features_option
@click.option("--train-until", callback=_iso, help="Train on impressions before this ISO 8601 time "
              "[default: the first 80% of the time range].")
@click.option("--engine", type=click.Choice(["lightgbm", "xgboost"]), help="[default: lightgbm]")
@click.option("--objective", type=click.Choice(["clicks", "conversions", "revenue"]), help="[default: clicks]")
@click.option("--tune", "tune_trials", type=int, help="Optuna trials for the ranker [default: 0, no tuning].")
@config_option
@_errors_as_messages
def train(features_dir: Path, config_file: Path | None, **flags: Any) -> None:
    """Train the ranker, the calibrated click model and the conversion model; save the bundle.

    Prints the bundle's tag (offer_ranker:<version>) on stdout.
    """
    cfg = _config(config_file, train=flags)
    click.echo(_run_train(cfg, features_dir))


@main.command()
@model_option
@features_option
@click.option("--out", type=PathArg, required=True, help="Parquet file for the scores.")
@click.option("--from", "start", callback=_iso, help="Score impressions from this ISO 8601 time on [default: all].")
@_errors_as_messages
def score(tag: str, features_dir: Path, out: Path, start: datetime | None) -> None:
    """Write request_id, offer_id, score and p_click (at the logged slot) for every impression."""
    from offer_ranker.model.store import load
    from offer_ranker.model.predict import score_file

    path, rows = score_file(load(tag), features_dir, out, start)
    console.summary(f"score -> {path}", {"scores": path}, {"impressions": f"{rows:,}"})


@main.command()
@model_option
@features_option
@click.option("--out", type=PathArg, required=True, help="Folder for metrics.json and report.html.")
@click.option("--truth", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="ground_truth.parquet of simulated logs [default: found next to the raw logs, if any].")
@config_option
@_errors_as_messages
def evaluate(tag: str, features_dir: Path, out: Path, truth: Path | None, config_file: Path | None) -> None:
    """Evaluate a bundle on the impressions after its training window, against the baselines."""
    cfg = _config(config_file)
    _run_evaluate(cfg, tag, features_dir, out, truth)


@main.command()
@model_option
@features_option
@click.option("--out", type=PathArg, required=True, help="Folder for report.html and explanation.json.")
@click.option("--truth", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="ground_truth.parquet of simulated logs [default: found next to the raw logs, if any].")
@config_option
@_errors_as_messages
def explain(tag: str, features_dir: Path, out: Path, truth: Path | None, config_file: Path | None) -> None:
    """SHAP report for stakeholders: drivers, dependence, segments, worked examples, business value."""
    _run_explain(_config(config_file), tag, features_dir, out, truth)


@main.command()
@click.option("--model", "tag", default=None, help="Bundle tag or version [default: serve.model, i.e. latest].")
@click.option("--request", "request_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="JSON file with one /rank request body.")
@click.option("--snapshot", type=ExistingDir, help="Online snapshot to use instead of the bundle's own.")
@config_option
@_errors_as_messages
def rank(tag: str | None, request_file: Path, snapshot: Path | None, config_file: Path | None) -> None:
    """Rank one request and print exactly what POST /rank would answer (same code path)."""
    from pydantic import ValidationError

    from offer_ranker.serve.api import RankRequest, RequestError
    from offer_ranker.serve.router import Router

    # a ranking nobody was shown must not reach the prediction log (off-policy evaluation reads it)
    cfg = _config(config_file, serve={"model": tag, "snapshot": snapshot}).serve.model_copy(
        update={"prediction_log": None})
    try:
        request = RankRequest.model_validate_json(request_file.read_bytes())
    except ValidationError as exc:
        raise click.ClickException(f"{request_file} is not a valid /rank request:\n" + _errors(exc)) from None
    engine = Router.load(cfg)
    if any(e.bundle is None for e in engine.engines.values()):
        raise click.ClickException("; ".join(engine.problems))
    try:
        click.echo(engine.rank(request).response.model_dump_json())
    except RequestError as exc:
        raise click.ClickException(f"{request_file}: {exc}") from None
    finally:
        engine.close()


def _errors(exc: Exception) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


@main.group()
def models() -> None:
    """The model bundles in the BentoML model store."""


@models.command("list")
@_errors_as_messages
def models_list() -> None:
    """List bundles, newest first: tag, engine, objective, training window, validation metrics."""
    from offer_ranker.model.store import listing

    rows = listing()
    if not rows:
        click.echo("no bundles yet: train one with `offer-ranker train --features DIR`")
        return
    for row in rows:
        metrics = ", ".join(f"{k.removeprefix('metric_')}={v:.4f}" for k, v in row.items() if k.startswith("metric_"))
        click.echo(f"{row['tag']}  {row['created']}  {row.get('engine', '?')}/{row.get('objective', '?')}  "
                   f"trained {row.get('train_from', '?')[:16]} .. {row.get('train_until', '?')[:16]}  {metrics}")


@main.command()
@click.option("--out", type=PathArg, default=Path("runs/quickstart"), show_default=True,
              help="Folder for everything the run writes.")
@simulate_options
@config_option
@_errors_as_messages
def quickstart(out: Path, config_file: Path | None, **flags: Any) -> None:
    """Run the whole pipeline on simulated data: simulate, ingest, features, train, evaluate,
    explain; write an example /rank request."""
    cfg = _config(config_file, simulate=flags)
    _run_simulate(cfg, out / "raw")
    _run_ingest(cfg, out / "raw", out / "ingested")
    _run_features(cfg, out / "ingested", out / "features")
    tag = _run_train(cfg, out / "features")
    _run_evaluate(cfg, tag, out / "features", out / "evaluation", out / "raw" / "ground_truth.parquet")
    _run_explain(cfg, tag, out / "features", out / "explanation", out / "raw" / "ground_truth.parquet")
    request = _write_example_request(out / "features", out / "request.json")
    console.err.print(f"\n[bold]quickstart done[/bold]: everything is under {out}; model {tag}\n"
                      f"serve it:  bentoml serve        (in the project root; the latest bundle)\n"
                      f"try it:    offer-ranker rank --request {request}\n"
                      f"           curl -s -X POST localhost:3000/rank -H 'content-type: application/json' "
                      f"-d @{request}")


@main.command("simulate-online")
@click.option("--rounds", type=int, help="Retraining rounds after the warm-up [default: 4].")
@click.option("--out", type=PathArg, required=True, help="Folder for the logs, bundles' features and the plot.")
@click.option("--users", type=int, help="Distinct users over the period [default: 20000].")
@click.option("--seed", type=int, help="Random seed [default: 0].")
@config_option
@_errors_as_messages
def simulate_online(rounds: int | None, out: Path, users: int | None, seed: int | None,
                    config_file: Path | None) -> None:
    """Closed loop: the simulator as live traffic against the real ranking engine, retrained on
    its own logs every round; CTR, revenue and offer coverage per round for the heuristic, the
    model, and the model with exploration."""
    from offer_ranker.production.closed_loop import simulate_online as run

    cfg = _config(config_file, simulate={"users": users, "seed": seed}, simulate_online={"rounds": rounds})
    report = run(cfg, out, track=console.track)
    k = cfg.simulate_online.k
    console.err.print(f"\nexpected clicks in the top {k} per request (offer coverage of the top {k}):")
    console.err.print(f"{'round':>5}" + "".join(f"{arm:>18}" for arm in report["arms"]))
    for r in range(cfg.simulate_online.rounds + 1):
        console.err.print(f"{r:>5}" + "".join(f"{a[r]['top_expected_ctr']:>11.4f} ({a[r]['coverage']:.2f})"
                                              for a in report["arms"].values()))
    console.summary(f"simulate-online -> {out}", {"report": out / "simulate_online.json",
                                                   "plot": out / "simulate_online.png"},
                    {"seconds": report["seconds"], "bundles": ", ".join(report["bundles"]["model"])})


@main.command("logs-to-raw")
@click.option("--logs", type=ExistingDir, required=True, help="Folder of the service's prediction logs (*.jsonl).")
@click.option("--offers", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The offers catalogue (offers.parquet or .csv) the logged offer ids refer to.")
@click.option("--out", type=PathArg, required=True, help="Folder for the raw logs.")
@_errors_as_messages
def logs_to_raw(logs: Path, offers: Path, out: Path) -> None:
    """Turn the service's prediction logs into raw logs (impressions with propensities, clicks,
    conversions, users, offers) for ingest, features, train and evaluate."""
    from offer_ranker.production.logs_to_raw import logs_to_raw as run

    report = run(logs, offers, out)
    console.summary(f"logs-to-raw -> {out}", {name: out / f"{name}.parquet" for name in
                                               ("impressions", "clicks", "conversions", "users")}
                    | {"report": out / "logs_to_raw.json"},
                    {k: report[k] for k in ("files", "impressions", "users", "clicks", "conversions", "malformed")})


def _run_explain(cfg: Config, tag: str, features: Path, out: Path, truth: Path | None) -> None:
    from offer_ranker.model.store import load
    from offer_ranker.evaluation.explain import explain as run

    console.err.print("explaining the model with SHAP ...")
    summary = run(load(tag), features, out, cfg, truth=truth if truth is None or truth.exists() else None)
    top = ", ".join(d["feature"] for d in summary["drivers"][:3])
    business = summary.get("business")
    extra = (f"; extra clicks per 10,000 sessions {business['clicks']['extra_per_10k']['value']:+,.0f}"
             if business else "")
    console.summary(f"explain -> {out}", {"report": out / "report.html", "explanation": out / "explanation.json"},
                    {"rows explained": f"{summary['rows']:,}", "top drivers": top + extra})


def _write_example_request(features: Path, path: Path) -> Path:
    """One /rank body (20 live candidates, dated just after the simulated logs end)."""
    import json

    from offer_ranker.serve.examples import sample_requests

    path.write_text(json.dumps(sample_requests(features, 1, candidates=20, new_users=0.0)[0], indent=2) + "\n")
    return path


def _run_simulate(cfg: Config, out: Path) -> None:
    from offer_ranker.simulator import simulate as run

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
    from offer_ranker.data.ingest import ingest as run

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
    from offer_ranker.featurize.build import build_features

    result = build_features(source, out, cfg, track=console.track)
    snapshot = out / "snapshot"
    console.summary(
        f"features -> {out}",
        {"train": result.train, "manifest": result.manifest, "snapshot": snapshot},
        {"rows": f"{result.rows:,} impressions x {result.features} features",
         "seconds": f"{result.seconds:.1f}"},
    )


def _run_train(cfg: Config, features_dir: Path) -> str:
    from offer_ranker.model.store import bentoml_path
    from offer_ranker.model.train import train as run

    result = run(features_dir, cfg, track=console.track)
    info = result.bundle.info
    console.summary(
        f"train -> {result.tag}",
        {"bundle": Path(bentoml_path(result.tag))},
        {"engine / objective": f"{info['engine']} / {info['objective']} (orders by {info['score_model']})",
         "window": f"{info['train_from']} .. {info['train_until']} (validation from {info['valid_from']})",
         "rows": f"{info['rows']['fit']:,} fit + {info['rows']['valid']:,} validation",
         "validation": ", ".join(f"{k}={v:.4f}" for k, v in info["metrics"].items()),
         "seconds": f"{result.seconds:.1f} {info['seconds']}"},
    )
    return result.tag


def _run_evaluate(cfg: Config, tag: str, features_dir: Path, out: Path, truth: Path | None) -> None:
    from offer_ranker.model.store import load
    from offer_ranker.evaluation.evaluate import evaluate as run
    from offer_ranker.report import headline_rows

    report = run(load(tag), features_dir, out, cfg, truth=truth if truth and truth.exists() else None,
                 track=console.track)
    header, rows = headline_rows(report)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    click.echo(f"evaluation of {report['model']} on {report['test']['requests']:,} later requests "
               f"(95% CIs, bootstrap by request):")
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if report.get("ope"):
        o = report["ope"]
        line = (f"off-policy, {o['estimand']}: logging policy {o['logging_policy']['value']:.4f}; model: "
                f"IPS {o['ips']['value']:.4f}, SNIPS {o['snips']['value']:.4f}, DR {o['dr']['value']:.4f}")
        if "true_value" in o:
            line += f"; true {o['true_value']['value']:.4f}"
        click.echo(line)
    console.summary(f"evaluate -> {out}", {"metrics": out / "metrics.json", "report": out / "report.html"},
                    {"targets met": f"{sum(report['targets'].values())} of {len(report['targets'])}"})


@main.command("ab-report")
@click.option("--logs", "logs_dir", type=ExistingDir, required=True,
              help="Folder of prediction logs (*.jsonl, one per service process; read recursively).")
@click.option("--out", type=PathArg, default=Path("runs/ab-report"), show_default=True,
              help="Folder for ab_report.json and ab_report.html.")
@click.option("--control", help="Arm the others are compared with [default: 'control' if logged, else the first "
              "arm in name order].")
@config_option
@_errors_as_messages
def ab_report(logs_dir: Path, out: Path, control: str | None, config_file: Path | None) -> None:
    """A/B test report from prediction logs: CTR, conversions and revenue per session by arm with CIs,
    lifts against the control, the sample-ratio check and the sample size needed."""
    from offer_ranker.production.abtest import ab_report as run
    from offer_ranker.production.abtest import srm_line, summary_rows

    cfg = _config(config_file, ab={"control": control})
    report = run(logs_dir, out, cfg.ab)
    header, rows = summary_rows(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    level = f"{1 - cfg.ab.alpha:.0%}"
    requests = sum(a["requests"] for a in report["arms"].values())
    click.echo(f"A/B report of {requests:,.0f} requests, {level} CIs by {report['unit']}, "
               f"control {report['control']}:")
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    click.echo(srm_line(report))
    bad = report["malformed"]
    console.summary(f"ab-report -> {out}", {"report": out / "ab_report.html", "data": out / "ab_report.json"},
                    {"sessions / users": ", ".join(f"{arm} {a['sessions']:,} / {a['users']:,}"
                                                   for arm, a in report["arms"].items()),
                     "malformed lines": f"{bad['count']:,}" + (
                         f" (first: {bad['lines'][0]['file']} line {bad['lines'][0]['line']}: "
                         f"{bad['lines'][0]['reason']}; all listed in ab_report.json)" if bad["count"] else "")})


@main.command()
@click.option("--logs", "logs_dir", type=ExistingDir, required=True,
              help="Folder of prediction logs (*.jsonl, one per service process; read recursively).")
@model_option
@click.option("--out", type=PathArg, required=True, help="Folder for monitor.json and monitor.html.")
@click.option("--all-versions/--this-version", "all_versions", default=None,
              help="Monitor the records of every model version, or only the bundle's [default: only the bundle's].")
@config_option
@_errors_as_messages
def monitor(logs_dir: Path, tag: str, out: Path, config_file: Path | None, **flags: Any) -> None:
    """Check the prediction logs against the bundle's training reference: feature and p_click drift
    (PSI), fallbacks, unknown offers, latency, volume. Exits with 1 when a check fails."""
    from collections import Counter

    from rich.markup import escape

    from offer_ranker.model.store import load
    from offer_ranker.production.monitor import monitor as run

    cfg = _config(config_file, monitor=flags)
    report = run(load(tag), logs_dir, out, cfg.monitor)
    records, statuses = report["records"], Counter(c["status"] for c in report["checks"])
    bad = report["malformed"]
    console.summary(f"monitor -> {out}", {"report": out / "monitor.html", "data": out / "monitor.json"},
                    {"requests": f"{records['monitored']:,} of {report['model']} ({records['rank']:,} rank records "
                                 f"read), {report['window']['from'][:16]} .. {report['window']['to'][:16]}",
                     "checks": ", ".join(f"{statuses[s]} {s}" for s in ("fail", "warn", "pass", "skip")),
                     "malformed lines": f"{bad['count']:,}" + (f" (first: {escape(bad['lines'][0])})"
                                                               if bad["count"] else "")})
    for alert in report["alerts"]:
        console.err.print(f"[bold red]ALERT[/bold red] {escape(alert)}", highlight=False)
    if report["alerts"]:
        raise SystemExit(1)
