"""Commands around the service: rank one request as ``POST /rank`` would, and load the online store."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from offer_ranker import console
from offer_ranker.cli.options import ExistingDir, ExistingFile, config, config_option, errors_as_messages


@click.command()
@click.option("--model", "tag", default=None, help="Bundle: an alias (production, candidate), a tag or a version [default: serve.model, i.e. production].")
@click.option("--request", "request_file", type=ExistingFile, required=True, help="JSON file with one /rank request body.")
@click.option("--snapshot", type=ExistingDir, help="Online snapshot to use instead of the bundle's own.")
@config_option
@errors_as_messages
def rank(tag: str | None, request_file: Path, snapshot: Path | None, config_file: Path | None) -> None:
    """Rank one request and print exactly what POST /rank would answer (same code path)."""
    from offer_ranker.serve.api import RankRequest, RequestError
    from offer_ranker.serve.router import Router

    # a ranking nobody was shown must not reach the prediction log (off-policy evaluation reads it)
    # nor the online state
    cfg = config(config_file, serve={"model": tag, "snapshot": snapshot}).serve.model_copy(
        update={"prediction_log": None, "journal": None, "online_store": "memory"})
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
def online() -> None:
    """The online store the service reads and writes."""


@online.command("load")
@click.option("--snapshot", type=ExistingDir, required=True,
              help="A snapshot folder, or a features folder holding one (its manifest next to it).")
@click.option("--store", "url", required=True, help="The Redis/Valkey URL, redis://host:port/db.")
@click.option("--force", is_flag=True, help="Load again even if the namespace is there already.")
@config_option
@errors_as_messages
def online_load(snapshot: Path, url: str, force: bool, config_file: Path | None) -> None:
    """Load a snapshot into its namespace in Redis (replicas do this themselves when they start;
    this is for operators: before a rollout, or after Redis lost its data). Uses the [serve]
    settings of --config for the user-key salt and the TTLs, as the service does."""
    import time

    from offer_ranker.featurize.online import open_store

    cfg = config(config_file, serve={"online_store": url}).serve
    started = time.perf_counter()
    store = open_store(snapshot, url=cfg.online_store, salt=cfg.hash_salt, user_ttl_days=cfg.user_ttl_days,
                       request_ttl_hours=cfg.request_ttl_hours, timeout_ms=max(cfg.store_timeout_ms, 5000.0),
                       catch_up=False, reload=force)
    try:
        if not store.wait_ready(900):
            raise click.ClickException(f"the namespace did not become ready: {store.status()}")
        meta = {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.meta).items()}
    finally:
        store.close()
    console.summary(f"online load -> {url.rpartition('@')[2]}", {"snapshot": snapshot}, {
        "namespace": store.keys.ns, "users": meta.get("users", "?"),
        "load seconds": meta.get("load_seconds", "?"), "wall seconds": f"{time.perf_counter() - started:.1f}"})


COMMANDS = (rank, online)
