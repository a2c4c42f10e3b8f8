"""What the ``offer-ranker`` commands share: their options, the config they fill, and how known
failures end a command (a message, not a traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from offer_ranker.config import Config, ConfigError, load_config
from offer_ranker.errors import OfferRankerError

Command = Callable[..., Any]
PathArg = click.Path(path_type=Path)
ExistingDir = click.Path(path_type=Path, exists=True, file_okay=False)
ExistingFile = click.Path(path_type=Path, exists=True, dir_okay=False)


def stack(*options: Callable[[Command], Command]) -> Callable[[Command], Command]:
    """Several options as one decorator, in the order given."""
    def decorate(fn: Command) -> Command:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def out_option(help: str, **kwargs: Any) -> Callable[[Command], Command]:
    return click.option("--out", type=PathArg, required="default" not in kwargs, help=help, **kwargs)


def _iso(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 timestamp such as 2026-01-15T00:00:00, got {value!r}") from None


def time_option(name: str, dest: str, help: str) -> Callable[[Command], Command]:
    """An ISO 8601 time, naive = UTC."""
    return click.option(name, dest, callback=_iso, help=help)


config_option = click.option("--config", "config_file", type=ExistingFile,
                             help="TOML config file; flags given on the command line override it.")
features_option = click.option("--features", "features_dir", type=ExistingDir, required=True,
                               help="Output folder of `offer-ranker features`.")
_MODEL_HELP = ("Bundle: a tag (offer_ranker:<version>), a version, a registry alias (production, candidate) or "
               "latest (the newest).")
model_option = click.option("--model", "tag", default="latest", show_default=True, help=_MODEL_HELP)
#: the model the service serves, for commands about production (monitor)
served_model_option = click.option("--model", "tag", default="production", show_default=True,
                                   help=_MODEL_HELP + " production falls back to the newest before any promotion.")
truth_option = click.option("--truth", type=ExistingFile, help="ground_truth.parquet of simulated logs [default: "
                            "found next to the raw logs, if any].")
logs_option = click.option("--logs", "logs_dir", type=ExistingDir, required=True,
                           help="Folder of prediction logs (*.jsonl, one per service process; read recursively).")
users_option = click.option("--users", type=int, help="Distinct users over the period [default: 20000].")
seed_option = click.option("--seed", type=int, help="Random seed; same seed, same files [default: 0].")
scenario_option = click.option("--scenario", type=click.Choice(["default", "short-lived"]),
                               help="default: offers live 3-21 days; short-lived: 2-48 hours, with titles and "
                                    "descriptions, users in sessions [default: default].")
simulate_options = stack(scenario_option, users_option,
                         click.option("--offers", type=int, help="Distinct offers over the period "
                                      "[default: 400; short-lived: 60 a day]."),
                         click.option("--days", type=int, help="Days of logs [default: 14]."), seed_option)
#: a bundle and the features folder it is judged on, with the config
judge_options = stack(model_option, features_option)


def errors_as_messages(fn: Command) -> Command:
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


def config(config_file: Path | None, **sections: dict[str, Any]) -> Config:
    """The one config: defaults < ``config_file`` < the flags given (``sections``: section -> flags)."""
    return load_config(config_file, sections)
