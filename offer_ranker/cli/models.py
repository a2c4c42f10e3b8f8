"""The model lifecycle: the bundles in the BentoML model store, the registry's aliases, promotion
with its gate, and rollback."""

from __future__ import annotations

from pathlib import Path

import click

from offer_ranker import console
from offer_ranker.cli.options import ExistingDir, config, config_option, errors_as_messages

alias_option = click.option("--alias", default="production", show_default=True,
                            help="The registry alias to move (serving resolves 'production'; an arm may use another).")


@click.group()
def models() -> None:
    """The model bundles (BentoML model store) and their aliases (MLflow model registry)."""


@models.command("list")
@errors_as_messages
def models_list() -> None:
    """List bundles, newest first: tag, aliases, engine/objective, training window, validation metrics."""
    from offer_ranker.model.registry import aliases
    from offer_ranker.model.store import listing

    rows = listing()
    if not rows:
        click.echo("no bundles yet: train one with `offer-ranker train --features DIR`")
        return
    named = aliases()
    console.table(["tag", "aliases", "created", "engine/objective", "trained", "validation"], [
        [row["tag"], ", ".join(named.get(row["tag"], [])), row["created"],
         f"{row.get('engine', '?')}/{row.get('objective', '?')}",
         f"{row.get('train_from', '?')[:16]} .. {row.get('train_until', '?')[:16]}",
         ", ".join(f"{k.removeprefix('metric_')}={v:.4f}" for k, v in row.items() if k.startswith("metric_"))]
        for row in rows])


@models.command("promote")
@click.argument("tag")
@alias_option
@click.option("--features", "features_dir", type=ExistingDir,
              help="Features folder whose impressions after both training windows judge the candidate "
                   "[default: the candidate's training folder].")
@click.option("--force", is_flag=True, help="Promote even if the gate finds the candidate significantly worse.")
@config_option
@errors_as_messages
def models_promote(tag: str, alias: str, features_dir: Path | None, force: bool, config_file: Path | None) -> None:
    """Point ALIAS at bundle TAG, if it is not significantly worse than the bundle there now.

    Both are judged on the same held-out window (efficiency on simulated data, else NDCG@k, with a
    95% CI paired by request); the comparison and the decision are recorded on the candidate's
    MLflow run. Exits with 1 when the gate refuses."""
    from offer_ranker.model.registry import resolve
    from offer_ranker.production.promotion import promote

    decision = promote(resolve(tag).tag, alias, config(config_file), features=features_dir, force=force)
    facts = {"decision": "promoted" if decision.promoted else "not promoted", "why": decision.reason}
    if decision.version:
        facts["registry version"] = decision.version
    console.summary(f"promote {decision.tag} -> {alias}", {}, facts)
    if not decision.promoted and decision.incumbent != decision.tag:
        raise click.ClickException(f"refused: {decision.tag} stays off '{alias}' ({decision.incumbent} stays); "
                                   f"--force promotes it anyway")


@models.command("rollback")
@alias_option
@errors_as_messages
def models_rollback(alias: str) -> None:
    """Move ALIAS back to the bundle it pointed at before its last promotion."""
    from offer_ranker.model.registry import rollback

    was, now = rollback(alias)
    console.summary(f"rollback {alias}", {}, {"from": was, "to": now})


COMMANDS = (models,)
