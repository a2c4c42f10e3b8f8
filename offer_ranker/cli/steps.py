"""Each pipeline step as the commands (and ``quickstart``) run it: with progress on stderr and a
summary of its outputs at the end. Stages are imported when a step runs, so ``--help`` stays quick."""

from __future__ import annotations

import json
from pathlib import Path

import click

from offer_ranker import console
from offer_ranker.config import Config


def simulate(cfg: Config, out: Path) -> None:
    from offer_ranker.simulator import simulate as run

    result = run(cfg.simulate, out, track=console.track)
    console.summary(f"simulate -> {out}", dict(result.paths), {
        "impressions": f"{result.impressions:,} in {result.requests:,} requests",
        "clicks / conversions": f"{result.clicks:,} / {result.conversions:,}",
        "users / offers": f"{result.users:,} / {result.offers:,}",
        "seconds": f"{result.seconds:.1f}",
    })


def ingest(cfg: Config, raw: Path, out: Path) -> None:
    from offer_ranker.data.ingest import ingest as run

    report = run(raw, out, cfg.ingest, track=console.track)
    outputs = {name: out / entry["output"] for name, entry in report["tables"].items()}
    outputs |= {f"quarantine/{name}": out / entry["quarantine"]
                for name, entry in report["tables"].items() if "quarantine" in entry}
    outputs["report"] = out / "ingest_report.json"
    facts = {
        name: (f"read {t['read']:,}, accepted {t['accepted']:,}, duplicates {t['duplicates']:,}, "
               f"quarantined {t['quarantined']:,}" + (f" {t['quarantined_by_reason']}" if t["quarantined"] else ""))
        for name, t in report["tables"].items()
    }
    labels = report["labels"]
    facts["labelled"] = (f"{labels['impressions']:,} impressions, click rate {labels['click_rate']}, "
                         f"conversion rate {labels['conversion_rate']}")
    facts["seconds"] = report["seconds"]
    console.summary(f"ingest -> {out}", outputs, facts)


def features(cfg: Config, source: Path, out: Path, engine: str = "duckdb") -> None:
    from offer_ranker.featurize.build import build_features

    result = build_features(source, out, cfg, engine=engine, track=console.track)
    console.summary(f"features -> {out}", {"train": result.train, "manifest": result.manifest,
                                            "snapshot": out / "snapshot"},
                    {"rows": f"{result.rows:,} impressions x {result.features} features", "engine": engine,
                     "seconds": f"{result.seconds:.1f}"})


def train(cfg: Config, features_dir: Path) -> str:
    """Train and save a bundle; returns its tag."""
    from offer_ranker.model.store import bentoml_path
    from offer_ranker.model.tracking import tracking_uri
    from offer_ranker.model.train import train as run

    result = run(features_dir, cfg, track=console.track)
    info = result.bundle.info
    console.summary(f"train -> {result.tag}", {"bundle": Path(bentoml_path(result.tag))}, {
        "engine / objective": f"{info['engine']} / {info['objective']} (orders by {info['score_model']})",
        "window": f"{info['train_from']} .. {info['train_until']} (validation from {info['valid_from']})",
        "rows": f"{info['rows']['fit']:,} fit + {info['rows']['valid']:,} validation",
        "validation": ", ".join(f"{k}={v:.4f}" for k, v in info["metrics"].items()),
        "seconds": f"{result.seconds:.1f} {info['seconds']}",
        "mlflow run": f"{result.run_id} in {tracking_uri()}" if result.run_id else "not recorded",
    })
    return result.tag


def promote(cfg: Config, tag: str, alias: str = "production") -> None:
    """Promote through the gate; a refusal is reported, not raised (the alias keeps its model)."""
    from offer_ranker.production.promotion import promote as run

    decision = run(tag, alias, cfg)
    console.summary(f"promote {tag} -> {alias}", {}, {
        "decision": "promoted" if decision.promoted else f"not promoted ({decision.incumbent} stays)",
        "why": decision.reason})


def evaluate(cfg: Config, tag: str, features_dir: Path, out: Path, truth: Path | None) -> None:
    """Evaluate; the headline table goes to stdout, the verdict and the outputs to stderr."""
    from offer_ranker.evaluation.evaluate import evaluate as run
    from offer_ranker.evaluation.evaluation_page import headline_rows
    from offer_ranker.model.registry import load

    report = run(load(tag), features_dir, out, cfg, truth=truth if truth and truth.exists() else None,
                 track=console.track)
    click.echo(f"evaluation of {report['model']} on {report['test']['requests']:,} later requests "
               f"(95% CIs, bootstrap by request):")
    console.table(*headline_rows(report))
    if report.get("ope"):
        o = report["ope"]
        line = (f"off-policy, {o['estimand']}: logging policy {o['logging_policy']['value']:.4f}; model: "
                f"IPS {o['ips']['value']:.4f}, SNIPS {o['snips']['value']:.4f}, DR {o['dr']['value']:.4f}")
        if "true_value" in o:
            line += f"; true {o['true_value']['value']:.4f}"
        click.echo(line)
    console.summary(f"evaluate -> {out}", {"metrics": out / "metrics.json", "report": out / "report.html"},
                    {"verdict": report["verdict"]["summary"]})


def explain(cfg: Config, tag: str, features: Path, out: Path, truth: Path | None) -> None:
    from offer_ranker.evaluation.explain import explain as run
    from offer_ranker.model.registry import load

    console.say("explaining the model with SHAP ...")
    summary = run(load(tag), features, out, cfg, truth=truth if truth is None or truth.exists() else None)
    top = ", ".join(d["feature"] for d in summary["drivers"][:3])
    business = summary.get("business")
    extra = (f"; extra clicks per 10,000 sessions {business['clicks']['extra_per_10k']['value']:+,.0f}"
             if business else "")
    console.summary(f"explain -> {out}", {"report": out / "report.html", "explanation": out / "explanation.json"},
                    {"rows explained": f"{summary['rows']:,}", "top drivers": top + extra})


def example_request(features: Path, path: Path) -> Path:
    """One /rank body (20 live candidates, dated just after the simulated logs end)."""
    from offer_ranker.serve.examples import sample_requests

    path.write_text(json.dumps(sample_requests(features, 1, candidates=20, new_users=0.0)[0], indent=2) + "\n")
    return path


def next_steps(out: Path, tag: str, request: Path) -> list[str]:
    """What to run after ``quickstart``: each command whole on one line, ready to copy."""
    return ["", f"quickstart done: everything is under {out}; model {tag}",
            "serve it (in the project root; the bundle the registry's 'production' alias points at):",
            "  bentoml serve",
            "compare runs in MLflow (mlflow.db), list the bundles and their aliases:",
            "  make mlflow-ui",
            "  offer-ranker models list",
            "try it:",
            f"  offer-ranker rank --request {request}",
            f"  curl -s -X POST localhost:3000/rank -H 'content-type: application/json' -d @{request}"]
