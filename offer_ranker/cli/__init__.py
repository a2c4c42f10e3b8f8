"""The ``offer-ranker`` command line. Each command fills the one config model from an optional
``--config`` TOML file plus its flags, runs one stage, and ends with a summary of its outputs
(on stderr; results a script may read, such as a bundle's tag or a table, go to stdout).

Commands live by what they act on: :mod:`.pipeline` (simulate to explain, quickstart),
:mod:`.serving` (rank, online load), :mod:`.models` (list, promote, rollback) and :mod:`.production`
(monitor, ab-report, logs-to-raw, simulate-online); :mod:`.options` holds what they share.
"""

from __future__ import annotations

import click

from offer_ranker import __version__
from offer_ranker.cli import models, pipeline, production, serving


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="offer-ranker")
def main() -> None:
    """Offer propensity ranking: simulate or ingest logs, build features, train, evaluate, serve."""


for _command in (*pipeline.COMMANDS, *serving.COMMANDS, *models.COMMANDS, *production.COMMANDS):
    main.add_command(_command)
