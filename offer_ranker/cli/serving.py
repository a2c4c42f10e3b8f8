"""Commands around the service: rank one request as ``POST /rank`` would, and the model store."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from offer_ranker import console
from offer_ranker.cli.options import ExistingDir, ExistingFile, config, config_option, errors_as_messages


@click.command()
@click.option("--model", "tag", default=None, help="Bundle tag or version [default: serve.model, i.e. latest].")
@click.option("--request", "request_file", type=ExistingFile, required=True, help="JSON file with one /rank request body.")
@click.option("--snapshot", type=ExistingDir, help="Online snapshot to use instead of the bundle's own.")
@config_option
@errors_as_messages
def rank(tag: str | None, request_file: Path, snapshot: Path | None, config_file: Path | None) -> None:
    """Rank one request and print exactly what POST /rank would answer (same code path)."""
    from offer_ranker.serve.api import RankRequest, RequestError
    from offer_ranker.serve.router import Router

    # a ranking nobody was shown must not reach the prediction log (off-policy evaluation reads it)
    cfg = config(config_file, serve={"model": tag, "snapshot": snapshot}).serve.model_copy(
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


def _errors(exc: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


@click.group()
def models() -> None:
    """The model bundles in the BentoML model store."""


@models.command("list")
@errors_as_messages
def models_list() -> None:
    """List bundles, newest first: tag, engine, objective, training window, validation metrics."""
    from offer_ranker.model.store import listing

    rows = listing()
    if not rows:
        click.echo("no bundles yet: train one with `offer-ranker train --features DIR`")
        return
    console.table(["tag", "created", "engine/objective", "trained", "validation"], [
        [row["tag"], row["created"], f"{row.get('engine', '?')}/{row.get('objective', '?')}",
         f"{row.get('train_from', '?')[:16]} .. {row.get('train_until', '?')[:16]}",
         ", ".join(f"{k.removeprefix('metric_')}={v:.4f}" for k, v in row.items() if k.startswith("metric_"))]
        for row in rows])


COMMANDS = (rank, models)
