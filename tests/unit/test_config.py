"""Node settings: flags > ``MEMMESH_*`` environment > TOML file > defaults, and clear errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from memmesh.admission import AdmissionLimits
from memmesh.config import (
    ConfigError,
    NodeSettings,
    load_settings,
    render_config_toml,
    write_new_file,
)
from memmesh.core import SyncLimits
from memmesh.errors import LocalError

DOCS = Path(__file__).parents[2] / "docs" / "operations.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MEMMESH_* variable from the caller, and a fresh working directory (the default data
    dir ./memmesh-data is relative to it)."""
    for var in list(os.environ):
        if var.upper().startswith("MEMMESH_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def default_file(text: str) -> Path:
    return write_toml(Path("memmesh-data") / "memmesh.toml", text)


def only_problem(exc: pytest.ExceptionInfo[ConfigError]) -> tuple[str | None, str, str]:
    (problem,) = exc.value.problems
    return problem.setting, problem.source, problem.message


# Defaults and precedence.


def test_defaults() -> None:
    s = load_settings()
    assert s.data_dir == Path("memmesh-data")
    assert s.node_key_path == Path("memmesh-data/node.key")
    assert s.agent_key_path == Path("memmesh-data/agent.key")
    assert s.genesis_path == Path("memmesh-data/genesis.bin")
    assert s.admit_chain_path == Path("memmesh-data/admit-chain.bin")
    assert (s.gossip_host, s.gossip_port, s.api_host, s.api_port) == (
        "127.0.0.1",
        7400,
        "127.0.0.1",
        7401,
    )
    assert s.api_token is None
    assert s.advertised_url() == "ws://127.0.0.1:7400/v1/sync"
    assert s.advertised_url(bound_port=7999) == "ws://127.0.0.1:7999/v1/sync"
    assert s.peers == []
    assert s.start_isolated is False
    assert (s.log_format, s.log_level) == ("console", "info")
    assert s.frame_bytes_max == (1 << 20) + (64 << 10)
    assert s.commit_batch_window_ms == 2
    assert s.lmdb_map_size_bytes_max == 1 << 34
    assert (s.active_view_target, s.active_view_max, s.passive_view_max) == (5, 8, 30)


def test_file_beats_default() -> None:
    default_file("gossip_port = 7500\n")
    assert load_settings().gossip_port == 7500


def test_env_beats_file(monkeypatch: pytest.MonkeyPatch) -> None:
    default_file("gossip_port = 7500\n")
    monkeypatch.setenv("MEMMESH_GOSSIP_PORT", "7600")
    assert load_settings().gossip_port == 7600


def test_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    default_file("gossip_port = 7500\n")
    monkeypatch.setenv("MEMMESH_GOSSIP_PORT", "7600")
    assert load_settings(gossip_port=7700).gossip_port == 7700


def test_a_flag_of_none_counts_as_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMMESH_GOSSIP_PORT", "7600")
    assert load_settings(gossip_port=None).gossip_port == 7600


def test_data_dir_from_env_or_flag_decides_which_file_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_toml(Path("env-dir/memmesh.toml"), "api_port = 8001\n")
    write_toml(Path("flag-dir/memmesh.toml"), "api_port = 8002\n")
    monkeypatch.setenv("MEMMESH_DATA_DIR", "env-dir")
    assert load_settings().api_port == 8001
    s = load_settings(data_dir=Path("flag-dir"))
    assert (s.api_port, s.node_key_path) == (8002, Path("flag-dir/node.key"))


def test_config_flag_replaces_the_data_dirs_file() -> None:
    default_file("api_port = 8001\n")
    named = write_toml(
        Path("etc/node.toml"), 'api_port = 8003\ndata_dir = "data"\nnode_key_file = "/k/node.key"\n'
    )
    s = load_settings(config_file=named)
    assert s.api_port == 8003
    # Relative paths in a file are relative to the file; absolute ones stay.
    assert s.data_dir == Path("etc/data")
    assert s.node_key_path == Path("/k/node.key")
    assert s.genesis_path == Path("etc/data/genesis.bin")


def test_missing_config_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no such file") as exc:
        load_settings(config_file=Path("nope.toml"))
    assert "nope.toml" in only_problem(exc)[1]


# Errors name the setting and the source.


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_a_bad_value_names_the_setting_and_its_source(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source == "file":
        default_file('gossip_port = "many"\n')
    elif source == "env":
        monkeypatch.setenv("MEMMESH_GOSSIP_PORT", "many")
    with pytest.raises(ConfigError) as exc:
        load_settings(gossip_port="many" if source == "flag" else None)
    setting, where, message = only_problem(exc)
    assert setting == "gossip_port"
    expected = {
        "flag": "flag --gossip-port",
        "env": "environment variable MEMMESH_GOSSIP_PORT",
        "file": "config file memmesh-data/memmesh.toml",
    }[source]
    assert where == expected
    assert "'many'" in message
    assert "gossip_port" in str(exc.value)
    assert expected in str(exc.value)


def test_every_bad_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    default_file("active_view_max = 0\n")
    monkeypatch.setenv("MEMMESH_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as exc:
        load_settings(api_port=70000)
    found = {(p.setting, p.source) for p in exc.value.problems}
    assert found == {
        ("active_view_max", "config file memmesh-data/memmesh.toml"),
        ("log_level", "environment variable MEMMESH_LOG_LEVEL"),
        ("api_port", "flag --api-port"),
    }
    assert isinstance(exc.value, LocalError)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("frame_bytes_max", (1 << 20) + 1023),
        ("handshake_timeout_ms", 0),
        ("commit_batch_window_ms", -1),
        ("lmdb_map_size_bytes_max", 1 << 20),
        ("gossip_port", 65536),
        ("staged_bytes_max", True),
    ],
)
def test_limits_are_bounded(setting: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**{setting: value})
    assert only_problem(exc)[0] == setting


def test_zero_is_a_valid_port_and_batch_window() -> None:
    s = load_settings(api_port=0, commit_batch_window_ms=0)
    assert (s.api_port, s.commit_batch_window_ms) == (0, 0)


def test_unknown_toml_key_is_refused_with_a_suggestion() -> None:
    default_file("gossip_port = 7500\ngosip_port = 7501\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    _, where, message = only_problem(exc)
    assert where == "config file memmesh-data/memmesh.toml"
    assert "gosip_port is not a memmesh setting" in message
    assert "did you mean gossip_port?" in message


def test_tables_are_not_settings() -> None:
    default_file("[limits]\nframe_bytes_max = 2000000\n")
    with pytest.raises(ConfigError, match="limits is not a memmesh setting"):
        load_settings()


def test_broken_toml_names_the_file() -> None:
    default_file("gossip_port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load_settings()
    assert only_problem(exc)[1] == "config file memmesh-data/memmesh.toml"


def test_the_data_dirs_own_file_cannot_move_the_data_dir() -> None:
    default_file('data_dir = "elsewhere"\n')
    with pytest.raises(ConfigError, match="cannot move the data dir"):
        load_settings()


def test_an_env_variable_that_looks_like_a_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMMESH_GOSIP_PORT", "7500")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    _, where, message = only_problem(exc)
    assert where == "environment variable MEMMESH_GOSIP_PORT"
    assert "did you mean MEMMESH_GOSSIP_PORT?" in message
    monkeypatch.delenv("MEMMESH_GOSIP_PORT")
    monkeypatch.setenv("MEMMESH_SYNC_TIMEOUT_MS", "10")
    with pytest.raises(ConfigError, match="MEMMESH_SYNC_TIMEOUT_MS is not a memmesh setting"):
        load_settings()


def test_the_test_harness_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MEMMESH_TEST_SCALE", "MEMMESH_FUZZ_RUNS", "MEMMESH_CRASH_KILLS"):
        monkeypatch.setenv(var, "50")
    monkeypatch.setenv("MEMMESH_FUZZ_CORPUS", "/tmp/corpus")
    assert load_settings().gossip_port == 7400


def test_an_empty_env_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    default_file("gossip_port = 7500\n")
    monkeypatch.setenv("MEMMESH_GOSSIP_PORT", "")
    assert load_settings().gossip_port == 7500


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(gossip_prot=1)
    assert only_problem(exc)[:2] == ("gossip_prot", "flag --gossip-prot")


# Particular settings.


def test_tls_cert_without_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMMESH_TLS_CERT_FILE", "node.crt")
    with pytest.raises(ConfigError, match="must be given together") as exc:
        load_settings()
    setting, where, _ = only_problem(exc)
    assert setting == "tls_cert_file, tls_key_file"
    assert "tls_cert_file: environment variable MEMMESH_TLS_CERT_FILE" in where
    # The pair may come from two sources.
    s = load_settings(tls_key_file=Path("node.key.pem"))
    assert s.tls_enabled
    assert s.advertised_url() == "wss://127.0.0.1:7400/v1/sync"
    monkeypatch.delenv("MEMMESH_TLS_CERT_FILE")
    with pytest.raises(ConfigError, match="must be given together"):
        load_settings(tls_key_file=Path("node.key.pem"))


def test_peers_from_a_comma_separated_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMMESH_PEERS", "ws://10.0.0.2:7400/v1/sync, wss://b.example/v1/sync,")
    assert load_settings().peers == ["ws://10.0.0.2:7400/v1/sync", "wss://b.example/v1/sync"]
    default_file('peers = ["ws://c:7400/v1/sync"]\n')
    monkeypatch.delenv("MEMMESH_PEERS")
    assert load_settings().peers == ["ws://c:7400/v1/sync"]


@pytest.mark.parametrize("url", ["http://a:1/v1/sync", "ws://", "ws://a:99999/v1/sync", "a:1"])
def test_peer_and_advertise_urls_must_be_websocket_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="peers"):
        load_settings(peers=[url])
    with pytest.raises(ConfigError, match="advertise_url"):
        load_settings(advertise_url=url)


def test_advertise_url_overrides_the_derived_one() -> None:
    s = load_settings(gossip_host="0.0.0.0", advertise_url="wss://n1.example:443/v1/sync")
    assert s.advertised_url() == "wss://n1.example:443/v1/sync"
    assert load_settings(gossip_host="::1").advertised_url() == "ws://[::1]:7400/v1/sync"


def test_api_token_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMMESH_API_TOKEN", "hunter2")
    s = load_settings()
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)
    with pytest.raises(ConfigError) as exc:
        load_settings(api_token="   ")
    assert "   '" not in str(exc.value)


def test_bools_and_levels_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMMESH_START_ISOLATED", "true")
    monkeypatch.setenv("MEMMESH_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MEMMESH_LOG_FORMAT", "json")
    s = load_settings()
    assert (s.start_isolated, s.log_level, s.log_format) == (True, "debug", "json")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"dial_backoff_initial_ms": 500, "dial_backoff_max_ms": 400}, "dial_backoff_max_ms"),
        ({"receive_timeout_ms": 5000}, "receive_timeout_ms must exceed"),
        ({"api_port": 7400}, "cannot share one address and port"),
        ({"active_view_target": 9}, "active_view_max must be at least active_view_target"),
        ({"dep_refetch_min_ms": 600}, "dep_refetch_min_ms must be at most dep_refetch_ms"),
    ],
)
def test_settings_checked_together(flags: dict[str, int], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(**flags)


def test_sync_and_admission_limits_mapping() -> None:
    s = load_settings(
        frame_bytes_max=2 << 20,
        request_timeout_ms=11,
        handshake_timeout_ms=12,
        anti_entropy_interval_ms=13,
        dial_backoff_initial_ms=14,
        dial_backoff_max_ms=15,
        staged_bytes_max=16,
        causal_buffer_max=17,
        pending_buffer_max=18,
        active_view_target=2,
        active_view_max=3,
        passive_view_max=19,
        shuffle_interval_ms=20,
        view_rotation_interval_ms=0,
    )
    sync = s.sync_limits()
    assert isinstance(sync, SyncLimits)
    assert (
        sync.frame_bytes_max,
        sync.request_timeout_ms,
        sync.handshake_timeout_ms,
        sync.anti_entropy_interval_ms,
        sync.dial_backoff_initial_ms,
        sync.dial_backoff_max_ms,
        sync.staged_bytes_max,
        sync.active_view_target,
        sync.active_view_max,
        sync.passive_view_max,
        sync.shuffle_interval_ms,
        sync.view_rotation_interval_ms,
    ) == (2 << 20, 11, 12, 13, 14, 15, 16, 2, 3, 19, 20, 0)
    admission = s.admission_limits()
    assert isinstance(admission, AdmissionLimits)
    assert (admission.causal_buffer_max, admission.pending_buffer_max) == (17, 18)
    # The defaults agree with the modules' own defaults.
    defaults = load_settings()
    assert defaults.sync_limits() == SyncLimits()
    assert defaults.admission_limits() == AdmissionLimits()


def test_settings_are_immutable() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.gossip_port = 1  # type: ignore[misc]


def test_every_setting_is_described_and_documented() -> None:
    docs = DOCS.read_text()
    for name, field in NodeSettings.model_fields.items():
        assert field.description, name
        assert f"`{name}`" in docs, f"{name} is missing from docs/operations.md"


# Writing files.


def test_rendered_toml_reads_back() -> None:
    values: dict[str, int | bool | str] = {
        "gossip_port": 7500,
        "start_isolated": True,
        "gossip_host": 'we"ird\\host\n\t\x7fé',
    }
    text = render_config_toml(values, "a header\nover two lines")
    assert text.startswith("# a header\n# over two lines\n")
    assert tomllib.loads(text) == values
    with pytest.raises(ValueError, match="not a setting"):
        render_config_toml({"nonsense": 1})


def test_write_new_file_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    old = os.umask(0)
    try:
        write_new_file(path, b"one")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"one"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(LocalError, match="refusing to overwrite"):
        write_new_file(path, b"two")
    assert path.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
