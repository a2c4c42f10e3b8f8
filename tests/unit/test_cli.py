"""The command line: help everywhere, config errors as usage errors, outputs listed at the end."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from offer_ranker.cli import main

COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert f" {command} [OPTIONS]" in result.output
    settings = any(p.name == "config_file" for p in main.commands[command].params)
    # every command that reads settings takes a config file; groups list their commands
    assert ("--config" in result.output) == settings
    if isinstance(main.commands[command], click.Group):
        assert "Commands:" in result.output


def test_invalid_flag_value_is_a_usage_error_quoting_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "raw"), "--users", "3"])
    assert result.exit_code == 2
    assert "simulate.users: Input should be greater than or equal to 10, got 3" in result.output
    assert not (tmp_path / "raw").exists()


def test_config_file_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal, or none: printed commands must not wrap
    config = tmp_path / "c.toml"
    config.write_text("[simulate]\nusers = 60\ndays = 2\noffers = 40\nseed = 3\n")
    result = CliRunner().invoke(main, ["quickstart", "--out", str(tmp_path / "run"), "--config", str(config),
                                       "--users", "80"])
    assert result.exit_code == 0, result.output
    sim = json.loads((tmp_path / "run" / "raw" / "simulation.json").read_text())
    assert sim["config"]["users"] == 80 and sim["config"]["days"] == 2  # flag beats file
    report = json.loads((tmp_path / "run" / "ingested" / "ingest_report.json").read_text())
    assert report["tables"]["impressions"]["accepted"] == sim["counts"]["impressions"]
    assert str(tmp_path / "run" / "ingested" / "ingest_report.json") in result.output.replace("\n", "")
    assert (tmp_path / "run" / "features" / "train.parquet").exists()
    assert str(tmp_path / "run" / "features" / "manifest.json") in result.output.replace("\n", "")
    # quickstart ends with commands to copy, each whole on its own line
    request = tmp_path / "run" / "request.json"
    lines = [line.strip() for line in result.output.splitlines()]
    assert f"offer-ranker rank --request {request}" in lines
    assert f"curl -s -X POST localhost:3000/rank -H 'content-type: application/json' -d @{request}" in lines
