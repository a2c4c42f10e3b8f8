"""Commands of the production loop, on the service's prediction logs: monitor, ab-report,
logs-to-raw; and simulate-online, the closed loop against the real engine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from offer_ranker import console
from offer_ranker.cli.options import (
    ExistingFile,
    config,
    config_option,
    errors_as_messages,
    logs_option,
    out_option,
    seed_option,
    served_model_option,
    users_option,
)


@click.command()
@logs_option
@served_model_option
@out_option("Folder for monitor.json and monitor.html.")
@click.option("--all-versions/--this-version", "all_versions", default=None,
              help="Monitor the records of every model version, or only the bundle's [default: only the bundle's].")
@config_option
@errors_as_messages
def monitor(logs_dir: Path, tag: str, out: Path, config_file: Path | None, **flags: Any) -> None:
    """Check the prediction logs against the bundle's training reference: feature and p_click drift
    (PSI), fallbacks, unknown offers, latency, volume. Exits with 1 when a check fails."""
    from offer_ranker.model.registry import load
    from offer_ranker.production.monitor import monitor as run

    cfg = config(config_file, monitor=flags)
    report = run(load(tag), logs_dir, out, cfg.monitor)
    records, statuses = report["records"], Counter(c["status"] for c in report["checks"])
    bad = report["malformed"]
    console.say(report["summary"]["headline"])
    console.summary(f"monitor -> {out}", {"report": out / "monitor.html", "data": out / "monitor.json"},
                    {"requests": f"{records['monitored']:,} of {report['model']} ({records['rank']:,} rank records "
                                 f"read), {report['window']['from'][:16]} .. {report['window']['to'][:16]}",
                     "checks": ", ".join(f"{statuses[s]} {s}" for s in ("fail", "warn", "pass", "skip")),
                     "malformed lines": f"{bad['count']:,}" + (f" (first: {bad['lines'][0]})" if bad["count"] else "")})
    for alert in report["alerts"]:
        console.say(f"ALERT {alert}")
    if report["alerts"]:
        raise SystemExit(1)


@click.command("ab-report")
@logs_option
@out_option("Folder for ab_report.json and ab_report.html.", default=Path("runs/ab-report"), show_default=True)
@click.option("--control", help="Arm the others are compared with [default: 'control' if logged, else the first "
              "arm in name order].")
@config_option
@errors_as_messages
def ab_report(logs_dir: Path, out: Path, control: str | None, config_file: Path | None) -> None:
    """A/B test report from prediction logs: CTR, conversions and revenue per session by arm with CIs,
    lifts against the control, the sample-ratio check and the sample size needed."""
    from offer_ranker.production.abtest import ab_report as run
    from offer_ranker.production.abtest import srm_line, summary_rows, verdict

    cfg = config(config_file, ab={"control": control})
    report = run(logs_dir, out, cfg.ab)
    requests = sum(a["requests"] for a in report["arms"].values())
    click.echo(f"A/B report of {requests:,.0f} requests, {1 - cfg.ab.alpha:.0%} CIs by {report['unit']}, "
               f"control {report['control']}:")
    console.table(*summary_rows(report))
    click.echo(srm_line(report))
    for line in verdict(report)["lines"]:
        console.say(line)
    bad = report["malformed"]
    console.summary(f"ab-report -> {out}", {"report": out / "ab_report.html", "data": out / "ab_report.json"},
                    {"sessions / users": ", ".join(f"{arm} {a['sessions']:,} / {a['users']:,}"
                                                   for arm, a in report["arms"].items()),
                     "malformed lines": f"{bad['count']:,}" + (
                         f" (first: {bad['lines'][0]['file']} line {bad['lines'][0]['line']}: "
                         f"{bad['lines'][0]['reason']}; all listed in ab_report.json)" if bad["count"] else "")})


@click.command("logs-to-raw")
@logs_option
@click.option("--offers", type=ExistingFile, required=True,
              help="The offers catalogue (offers.parquet or .csv) the logged offer ids refer to.")
@out_option("Folder for the raw logs.")
@errors_as_messages
def logs_to_raw(logs_dir: Path, offers: Path, out: Path) -> None:
    """Turn the service's prediction logs into raw logs (impressions with propensities, clicks,
    conversions, users, offers) for ingest, features, train and evaluate."""
    from offer_ranker.production.logs_to_raw import logs_to_raw as run

    report = run(logs_dir, offers, out)
    console.summary(f"logs-to-raw -> {out}", {name: out / f"{name}.parquet" for name in
                                               ("impressions", "clicks", "conversions", "users")}
                    | {"report": out / "logs_to_raw.json"},
                    {k: report[k] for k in ("files", "impressions", "users", "clicks", "conversions", "malformed")})


@click.command("simulate-online")
@click.option("--rounds", type=int, help="Retraining rounds after the warm-up [default: 4].")
@out_option("Folder for the logs, bundles' features and the plot.")
@users_option
@seed_option
@config_option
@errors_as_messages
def simulate_online(rounds: int | None, out: Path, users: int | None, seed: int | None,
                    config_file: Path | None) -> None:
    """Closed loop: the simulator as live traffic against the real ranking engine, retrained on
    its own logs every round; CTR, revenue and offer coverage per round for the heuristic, the
    model, and the model with exploration."""
    from offer_ranker.production.closed_loop import simulate_online as run

    cfg = config(config_file, simulate={"users": users, "seed": seed}, simulate_online={"rounds": rounds})
    report = run(cfg, out, track=console.track)
    k = cfg.simulate_online.k
    click.echo(f"expected clicks in the top {k} per request (offer coverage of the top {k}):")
    console.table(["round", *report["arms"]], [
        [r, *(f"{a[r]['top_expected_ctr']:.4f} ({a[r]['coverage']:.2f})" for a in report["arms"].values())]
        for r in range(cfg.simulate_online.rounds + 1)])
    console.summary(f"simulate-online -> {out}", {"report": out / "simulate_online.json",
                                                   "plot": out / "simulate_online.png"},
                    {"seconds": report["seconds"], "bundles": ", ".join(report["bundles"]["model"])})


COMMANDS = (monitor, ab_report, logs_to_raw, simulate_online)
