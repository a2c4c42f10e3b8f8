"""One strict configuration model, filled from an optional TOML file and CLI flags.

Every section forbids unknown keys, and every error quotes the offending value::

    simulate.users: Input should be greater than or equal to 10, got 3

Precedence: defaults < config file < command-line flags.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from offer_ranker.config.offline import (
    EvaluateConfig,
    ExplainConfig,
    FeaturesConfig,
    IngestConfig,
    SimulateConfig,
    SparkConfig,
    TrackConfig,
    TrainConfig,
)
from offer_ranker.config.online import ABConfig, ArmConfig, MonitorConfig, ServeConfig, SimulateOnlineConfig
from offer_ranker.config.strict import Strict
from offer_ranker.errors import OfferRankerError


class ConfigError(OfferRankerError, ValueError):
    """A configuration value is invalid; the message names the field and quotes the value."""


class Config(Strict):
    simulate: SimulateConfig = SimulateConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeaturesConfig = FeaturesConfig()
    spark: SparkConfig = SparkConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    explain: ExplainConfig = ExplainConfig()
    serve: ServeConfig = ServeConfig()
    simulate_online: SimulateOnlineConfig = SimulateOnlineConfig()
    ab: ABConfig = ABConfig()
    monitor: MonitorConfig = MonitorConfig()
    track: TrackConfig = TrackConfig()


def load_config(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Build the config from defaults, an optional TOML file and per-section overrides.

    ``overrides`` maps a section to the values given on the command line; ``None`` values
    (flags not given) are ignored so they never mask the file.
    """
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            data.setdefault(section, {}).update(given)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid configuration{where}:\n" + format_errors(exc)) from None


def format_errors(exc: ValidationError) -> str:
    """One line per error: ``section.field: message, got <value>``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        lines.append(f"  {loc}: {msg}, got {err['input']!r}")
    return "\n".join(lines)


def serve_config_from_env() -> ServeConfig:
    """The ``[serve]`` settings of the service: the TOML file named by ``OFFER_RANKER_CONFIG``, with
    ``OFFER_RANKER_MODEL`` (a tag), ``OFFER_RANKER_SNAPSHOT`` (a folder) and
    ``OFFER_RANKER_ONLINE_STORE`` (``memory`` or a redis:// URL) overriding it."""
    import os

    path = os.environ.get("OFFER_RANKER_CONFIG")
    overrides = {"model": os.environ.get("OFFER_RANKER_MODEL"), "snapshot": os.environ.get("OFFER_RANKER_SNAPSHOT"),
                 "online_store": os.environ.get("OFFER_RANKER_ONLINE_STORE")}
    return load_config(Path(path) if path else None, {"serve": overrides}).serve


__all__ = ["ABConfig", "ArmConfig", "Config", "ConfigError", "EvaluateConfig", "ExplainConfig", "FeaturesConfig",
           "IngestConfig", "MonitorConfig", "ServeConfig", "SimulateConfig", "SimulateOnlineConfig", "SparkConfig",
           "TrackConfig", "TrainConfig", "format_errors", "load_config", "serve_config_from_env"]
