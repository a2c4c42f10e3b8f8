"""The strict config: defaults, file + flag precedence, and errors that quote the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from offer_ranker.config import Config, ConfigError, load_config


def test_defaults_validate() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.simulate.users == 20_000 and cfg.ingest.csv_nulls == ("", "NULL", "NA")


def test_flags_override_file_and_none_flags_do_not(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[simulate]\nusers = 500\ndays = 5\n")
    cfg = load_config(path, {"simulate": {"users": 900, "days": None}})
    assert (cfg.simulate.users, cfg.simulate.days) == (900, 5)


INVALID = [
    ({"simulate": {"users": 3}}, r"simulate\.users: Input should be greater than or equal to 10, got 3"),
    ({"simulate": {"uniform_share": 1.5}}, r"simulate\.uniform_share: .*less than or equal to 1, got 1\.5"),
    ({"simulate": {"partners": 100}}, r"simulate\.partners: .*, got 100"),
    ({"simulate": {"user": 10}}, r"simulate\.user: unknown setting \(check the spelling\), got 10"),
    ({"simulat": {"users": 10}}, r"simulat: unknown setting"),
    ({"ingest": {"compression": "lz5"}}, r"ingest\.compression: .*, got 'lz5'"),
    ({"simulate": {"start": "2026-01-05T00:00:00+02:00"}}, r"simulate\.start: .*must be a naive UTC timestamp"),
    ({"simulate": {"start": "2026-01-05T06:30:00"}}, r"simulate\.start: .*must be midnight \(a date\), got 2026-01-05T06:30:00"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID)
def test_invalid_values_are_named_and_quoted(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulate\nusers = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[simulate]\nusres = 1\n")
    with pytest.raises(ConfigError, match=r"in .*typo\.toml:\n  simulate\.usres: unknown setting"):
        load_config(typo)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        Config().simulate.users = 5  # type: ignore[misc]


@pytest.mark.parametrize(("store", "workers", "expected"), [
    ("memory", None, 1), ("memory", 4, 1), ("redis://127.0.0.1:6379/0", None, 2), ("redis://h:1/0", 3, 3)])
def test_workers_are_one_per_core_only_with_a_shared_store(store: str, workers: int | None, expected: int) -> None:
    serve = load_config(None, {"serve": {"online_store": store, "workers": workers}}).serve
    assert serve.worker_count(cores=2) == expected


def test_online_store_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from offer_ranker.config import serve_config_from_env

    monkeypatch.delenv("OFFER_RANKER_CONFIG", raising=False)
    monkeypatch.setenv("OFFER_RANKER_ONLINE_STORE", "valkey://cache:6379/2")
    assert serve_config_from_env().online_store == "redis://cache:6379/2"
    monkeypatch.setenv("OFFER_RANKER_ONLINE_STORE", "http://cache")
    with pytest.raises(ConfigError, match="online_store"):
        serve_config_from_env()
