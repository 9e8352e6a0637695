"""A node's settings: defaults, a TOML file, ``MEMMESH_*`` environment variables and flags.

Precedence, highest first: flags (keyword arguments) > environment > TOML file > defaults. The
TOML file is the one named by ``config_file`` (``--config FILE``) or, when none is named,
``<data_dir>/memmesh.toml`` if it exists; ``data_dir`` itself may come from a flag or from
``MEMMESH_DATA_DIR``, so it is settled before the file is looked for.

Everything is flat: a setting ``gossip_port`` is ``gossip_port = 7500`` in the file,
``MEMMESH_GOSSIP_PORT=7500`` in the environment and ``gossip_port=7500`` as a flag. Relative paths
in a TOML file are relative to the file's directory; elsewhere, to the working directory.

:func:`load_settings` is the entry point: every problem becomes one :class:`ConfigError` that
names each bad setting and where its value came from.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .admission import AdmissionLimits
from .core import SyncLimits
from .errors import LocalError
from .files import write_file_atomically

__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULT_DATA_DIR",
    "ENV_PREFIX",
    "ConfigError",
    "ConfigProblem",
    "NodeSettings",
    "load_settings",
    "render_config_toml",
    "write_new_file",
]

ENV_PREFIX = "MEMMESH_"
CONFIG_FILE_NAME = "memmesh.toml"
DEFAULT_DATA_DIR = Path("memmesh-data")
SYNC_PATH = "/v1/sync"
_CONFIG_FILE_BYTES_MAX = 1 << 20
_HARNESS_PREFIXES = ("test_", "fuzz_", "crash_")
"""``MEMMESH_TEST_*``, ``MEMMESH_FUZZ_*`` and ``MEMMESH_CRASH_*`` belong to the test harness."""
_SETTING_SUFFIXES = (
    "_host",
    "_port",
    "_url",
    "_token",
    "_file",
    "_dir",
    "_ms",
    "_max",
    "_bytes",
    "_level",
    "_format",
)
"""An unknown ``MEMMESH_*`` variable ending like a setting is a typo, not someone else's."""
_PATH_FIELDS = (
    "config_file",
    "data_dir",
    "node_key_file",
    "agent_key_file",
    "genesis_file",
    "admit_chain_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One bad setting: ``setting`` is None for a problem with a whole source (a broken file)."""

    setting: str | None
    source: str
    message: str

    def __str__(self) -> str:
        if self.setting is None:
            return f"{self.source}: {self.message}"
        return f"{self.setting} (from {self.source}): {self.message}"


class ConfigError(LocalError):
    """The configuration is invalid; ``problems`` names every bad setting and its source."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        assert problems
        self.problems = tuple(problems)
        super().__init__("invalid configuration: " + "; ".join(map(str, self.problems)))


def _no_bool(value: object) -> object:
    # Pydantic's lax mode reads `true` as 1; a boolean where a number belongs is a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be an integer, not a boolean")
    return value


def _lowercase(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Int = Annotated[int, BeforeValidator(_no_bool)]
Port = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=65535)]


class NodeSettings(BaseSettings):
    """Everything a node reads at start. Build it with :func:`load_settings`.

    Constructing it directly resolves the same sources but raises pydantic's ``ValidationError``
    rather than a :class:`ConfigError`.
    """

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, case_sensitive=True, validate_default=True
    )

    # Where things live.
    config_file: Path | None = Field(
        default=None,
        description="The TOML file to read; None: <data_dir>/memmesh.toml when it exists.",
    )
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="The node's directory: keys, genesis, config file and store (mode 0700).",
    )
    node_key_file: Path | None = Field(
        default=None,
        description="The node's Ed25519 key (signs envelopes); None: <data_dir>/node.key.",
    )
    agent_key_file: Path | None = Field(
        default=None,
        description="The local agent's Ed25519 key (signs claims); None: <data_dir>/agent.key.",
    )
    genesis_file: Path | None = Field(
        default=None, description="The mesh's signed genesis; None: <data_dir>/genesis.bin."
    )
    admit_chain_file: Path | None = Field(
        default=None,
        description=(
            "The admit operations from genesis to this node's key, shown in handshakes; "
            "None: <data_dir>/admit-chain.bin."
        ),
    )

    # Network.
    gossip_host: str = Field(
        default="127.0.0.1", min_length=1, description="Address the sync listener binds."
    )
    gossip_port: Port = Field(
        default=7400, description="Port of the sync listener (0: any free port)."
    )
    api_host: str = Field(
        default="127.0.0.1", min_length=1, description="Address the REST API binds."
    )
    api_port: Port = Field(default=7401, description="Port of the REST API (0: any free port).")
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token the REST API requires; None: no token."
    )
    advertise_url: str | None = Field(
        default=None,
        description=(
            "The ws:// or wss:// URL peers dial to reach this node; "
            "None: derived from gossip_host and gossip_port."
        ),
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain for the sync listener; needs tls_key_file.",
    )
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key of tls_cert_file; needs tls_cert_file."
    )
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle that peers' certificates must chain to; None: system CAs.",
    )
    peers: list[str] = Field(
        default_factory=list,
        description=(
            "ws:// or wss:// URLs of peers to dial at start; "
            "a comma-separated string is accepted (the environment's form)."
        ),
    )
    scrub_on_start: bool = Field(
        default=True,
        description=(
            "Check every record's checksum and every envelope's hash and signature before "
            "opening the store, in a child process; quarantine what is damaged."
        ),
    )
    start_isolated: bool = Field(
        default=False,
        description=(
            "Allow local writes without first asking peers for this node's own head "
            "(only safe for the first node of a mesh or a restore you trust)."
        ),
    )

    # Logs.
    log_format: Annotated[Literal["console", "json"], BeforeValidator(_lowercase)] = Field(
        default="console", description="console: for people; json: one object per line."
    )
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)
    ] = Field(default="info", description="Least severe level logged.")

    # Limits: units last in each name.
    frame_bytes_max: Int = Field(
        default=(1 << 20) + (64 << 10),
        ge=(1 << 20) + 1024,
        description="Largest sync frame sent or accepted; a 1 MiB envelope must fit in one.",
    )
    handshake_timeout_ms: Int = Field(
        default=5_000, ge=1, description="Time a peer has to complete the handshake."
    )
    inbound_connections_max: Int = Field(
        default=256,
        ge=1,
        description=(
            "Inbound gossip connections held at once, handshaking or active; past it a new "
            "one is answered 503 before any websocket is set up."
        ),
    )
    heartbeat_interval_ms: Int = Field(
        default=5_000, ge=1, description="Idle time after which a session sends a heartbeat."
    )
    receive_timeout_ms: Int = Field(
        default=15_000,
        ge=1,
        description="Silence after which a session is closed; must exceed heartbeat_interval_ms.",
    )
    send_queue_frames_max: Int = Field(
        default=256, ge=1, description="Frames queued per session before it is closed as slow."
    )
    anti_entropy_interval_ms: Int = Field(
        default=1_000, ge=1, description="Time between anti-entropy rounds with each peer."
    )
    request_timeout_ms: Int = Field(
        default=10_000, ge=1, description="Time a peer has to answer a fetch request."
    )
    dial_backoff_initial_ms: Int = Field(
        default=100, ge=1, description="First wait before redialling a peer; doubles per failure."
    )
    dial_backoff_max_ms: Int = Field(
        default=30_000,
        ge=1,
        description="Longest wait between dials; at least dial_backoff_initial_ms.",
    )
    dial_backoff_alone_max_ms: Int = Field(
        default=2_000,
        ge=1,
        description="Longest wait between dials while the node has no session at all.",
    )
    agent_writes_per_s_max: Int = Field(
        default=0,
        ge=0,
        description="Claims a second each agent key may write through this node's API; past "
        "it (and its burst) writes get 429 rate_limited (0: no quota).",
    )
    agent_write_burst: Int = Field(
        default=200,
        ge=1,
        description="Claims an agent may write at once beyond its per-second quota.",
    )
    peer_receive_bytes_per_s: Int = Field(
        default=64 << 20,
        ge=0,
        description="Bytes a second read from one peer beyond a burst of two frames; a peer "
        "that sends faster waits on TCP flow control (0: no pacing).",
    )
    author_pushes_per_s: Int = Field(
        default=1_000,
        ge=0,
        description="Envelopes of one author node peers may push here a second (0: no budget); "
        "the rest of a push is dropped, counted, logged, and fetched later by anti-entropy.",
    )
    author_push_burst: Int = Field(
        default=5_000,
        ge=1,
        description="Envelopes of one author that may be pushed at once beyond that rate.",
    )
    commit_batch_window_ms: Int = Field(
        default=2,
        ge=0,
        description="When busy, time a commit waits for more to share it (0: never waits).",
    )
    staged_bytes_max: Int = Field(
        default=16 << 20,
        ge=1,
        description="Received envelope bytes held for the next commit; paces transfers.",
    )
    gc_freeze_every_claims: Int = Field(
        default=5_000,
        ge=0,
        description=(
            "Claims integrated between two freezes of the heap (one collection of what arrived "
            "since, then gc.freeze), so a garbage-collection pause stays bounded as the node's "
            "history grows; 0: only start-up freezes."
        ),
    )
    gc_freeze_inbound_max: Int = Field(
        default=32,
        ge=0,
        description=(
            "A freeze is put off while more inbound gossip connections than this are open "
            "(what a flood of handshakes allocates is not to be frozen)."
        ),
    )
    active_view_target: Int = Field(
        default=5, ge=1, description="Sessions the node dials towards (the active view's size)."
    )
    active_view_max: Int = Field(
        default=8,
        ge=1,
        description="Most sessions held; more handshakes are refused with view_full.",
    )
    passive_view_max: Int = Field(
        default=30, ge=1, description="Signed records of known peers kept in reserve."
    )
    discover_peers: bool = Field(
        default=True,
        description="Dial peers learned from other nodes, not only the configured ones.",
    )
    beacon_interval_ms: Int = Field(
        default=1_000,
        ge=1,
        description="How often the push tree's root signs a beacon.",
    )
    root_timeout_ms: Int = Field(
        default=3_500,
        ge=1,
        description="A push tree root not heard for this long is dropped and another claims.",
    )
    fetch_hedge_ms: Int = Field(
        default=2_000,
        ge=1,
        description="A fetch still unanswered after this long may be asked of another peer in "
        "an anti-entropy round, before request_timeout_ms runs out.",
    )
    dep_refetch_ms: Int = Field(
        default=500,
        ge=1,
        description="A missing dep that received envelopes wait for, still missing this long "
        "after it was asked for, is asked again of the peer whose envelope waits for it "
        "(at most this long: sooner once that peer's answer time is measured).",
    )
    dep_refetch_min_ms: Int = Field(
        default=50,
        ge=1,
        description="The shortest wait before a missing dep is asked again, however fast the "
        "peer answered before (at most dep_refetch_ms).",
    )
    ihave_batch_ms: Int = Field(
        default=50,
        ge=0,
        description="How long new envelopes' ids wait to share one announcement (IHave) on "
        "links they were not pushed on (0: one per commit).",
    )
    confirm_wait_ms: Int = Field(
        default=50,
        ge=1,
        description="How long a push on a tree link waits for the next push to confirm it "
        "before it is confirmed alone: the longest a lost push goes unnoticed.",
    )
    ihave_wait_ms: Int = Field(
        default=300,
        ge=1,
        description="How long an announced envelope may take to arrive before it is fetched.",
    )
    announced_ids_max: Int = Field(
        default=1 << 16, ge=1, description="Announced envelope ids waiting for their push."
    )
    causal_wait_max_ms: Int = Field(
        default=60_000,
        ge=1,
        description="How long a received envelope may wait for its causal past before it is "
        "dropped (fetched again if its past turns up).",
    )
    invalid_envelopes_max: Int = Field(
        default=32,
        ge=1,
        description="Invalid envelopes a peer may send before it is disconnected and banned.",
    )
    ban_initial_ms: Int = Field(
        default=10_000, ge=1, description="How long a first ban lasts (it doubles each time)."
    )
    ban_max_ms: Int = Field(default=600_000, ge=1, description="The longest ban.")
    shuffle_interval_ms: Int = Field(
        default=10_000, ge=1, description="How often peer records are swapped with a peer."
    )
    view_rotation_interval_ms: Int = Field(
        default=60_000,
        ge=0,
        description="How often a full view swaps one peer for another (0: never).",
    )
    search_scan_subjects_max: Int = Field(
        default=10_000,
        ge=1,
        description="Subjects one search request reads at most; past it the page ends early "
        "with a cursor to go on from.",
    )
    stale_read_after_ms: Int = Field(
        default=30_000,
        ge=1,
        description="A read counts as stale once no sync round ended in sync for this long.",
    )
    lmdb_map_size_bytes_max: Int = Field(
        default=1 << 34,
        ge=64 << 20,
        description="Largest the LMDB map may grow; past it writes fail with StorageFull.",
    )
    causal_buffer_max: Int = Field(
        default=4096, ge=1, description="Envelopes held waiting for their causal past."
    )
    pending_buffer_max: Int = Field(
        default=1024, ge=1, description="Envelopes held waiting for their author's admission."
    )
    held_envelope_bytes_max: Int = Field(
        default=8 << 20,
        ge=0,
        description="Bytes of the newest stored envelopes kept in memory; older ones are read "
        "from the store when served or proved.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags, then our environment reader, then the TOML file it and the flags point to.
        return init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls)

    @field_validator(*_PATH_FIELDS)
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else _expanduser(value)

    @field_validator("peers", mode="before")
    @classmethod
    def _split_peers(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("peers")
    @classmethod
    def _check_peers(cls, value: list[str]) -> list[str]:
        for url in value:
            _check_ws_url(url)
        return value

    @field_validator("advertise_url")
    @classmethod
    def _check_advertise_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_ws_url(value)
        return value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("an API token must not be empty")
        return value

    @_model_validator(mode="after")
    def _check_pairs(self) -> NodeSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise PydanticCustomError(
                "cross_field",
                "tls_cert_file and tls_key_file must be given together",
                {"fields": "tls_cert_file,tls_key_file"},
            )
        if self.dial_backoff_max_ms < self.dial_backoff_initial_ms:
            raise PydanticCustomError(
                "cross_field",
                "dial_backoff_max_ms must be at least dial_backoff_initial_ms",
                {"fields": "dial_backoff_initial_ms,dial_backoff_max_ms"},
            )
        if self.gossip_port == self.api_port != 0 and self.gossip_host == self.api_host:
            raise PydanticCustomError(
                "cross_field",
                "the sync listener and the REST API cannot share one address and port",
                {"fields": "gossip_port,api_port"},
            )
        if self.active_view_max < self.active_view_target:
            raise PydanticCustomError(
                "cross_field",
                "active_view_max must be at least active_view_target",
                {"fields": "active_view_target,active_view_max"},
            )
        if self.dep_refetch_min_ms > self.dep_refetch_ms:
            raise PydanticCustomError(
                "cross_field",
                "dep_refetch_min_ms must be at most dep_refetch_ms",
                {"fields": "dep_refetch_min_ms,dep_refetch_ms"},
            )
        if self.receive_timeout_ms <= self.heartbeat_interval_ms:
            raise PydanticCustomError(
                "cross_field",
                "receive_timeout_ms must exceed heartbeat_interval_ms, or idle sessions drop",
                {"fields": "heartbeat_interval_ms,receive_timeout_ms"},
            )
        return self

    # Resolved values.

    @property
    def node_key_path(self) -> Path:
        return self.node_key_file or self.data_dir / "node.key"

    @property
    def agent_key_path(self) -> Path:
        return self.agent_key_file or self.data_dir / "agent.key"

    @property
    def genesis_path(self) -> Path:
        return self.genesis_file or self.data_dir / "genesis.bin"

    @property
    def admit_chain_path(self) -> Path:
        return self.admit_chain_file or self.data_dir / "admit-chain.bin"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    def advertised_url(self, bound_port: int | None = None) -> str:
        """The URL peers dial: ``advertise_url``, else derived from the gossip listener.

        The derived URL is ``ws://`` (``wss://`` with TLS) ``{gossip_host}:{port}/v1/sync``, the
        port being ``bound_port`` when given (the one a ``gossip_port`` of 0 got). A listener
        bound to a wildcard address (``0.0.0.0``) needs ``advertise_url`` to be dialable.
        """
        if self.advertise_url is not None:
            return self.advertise_url
        scheme = "wss" if self.tls_enabled else "ws"
        host = f"[{self.gossip_host}]" if ":" in self.gossip_host else self.gossip_host
        port = self.gossip_port if bound_port is None else bound_port
        return f"{scheme}://{host}:{port}{SYNC_PATH}"

    def sync_limits(self) -> SyncLimits:
        """The sync protocol's bounds; the rest keep :class:`SyncLimits`' defaults."""
        return SyncLimits(
            frame_bytes_max=self.frame_bytes_max,
            request_timeout_ms=self.request_timeout_ms,
            handshake_timeout_ms=self.handshake_timeout_ms,
            anti_entropy_interval_ms=self.anti_entropy_interval_ms,
            dial_backoff_initial_ms=self.dial_backoff_initial_ms,
            dial_backoff_max_ms=self.dial_backoff_max_ms,
            dial_backoff_alone_max_ms=self.dial_backoff_alone_max_ms,
            staged_bytes_max=self.staged_bytes_max,
            active_view_target=self.active_view_target,
            active_view_max=self.active_view_max,
            passive_view_max=self.passive_view_max,
            shuffle_interval_ms=self.shuffle_interval_ms,
            view_rotation_interval_ms=self.view_rotation_interval_ms,
            discover_peers=self.discover_peers,
            ihave_wait_ms=self.ihave_wait_ms,
            ihave_batch_ms=self.ihave_batch_ms,
            confirm_wait_ms=self.confirm_wait_ms,
            fetch_hedge_ms=self.fetch_hedge_ms,
            dep_refetch_ms=self.dep_refetch_ms,
            dep_refetch_min_ms=self.dep_refetch_min_ms,
            beacon_interval_ms=self.beacon_interval_ms,
            root_timeout_ms=self.root_timeout_ms,
            announced_ids_max=self.announced_ids_max,
            causal_wait_max_ms=self.causal_wait_max_ms,
            invalid_envelopes_max=self.invalid_envelopes_max,
            ban_initial_ms=self.ban_initial_ms,
            ban_max_ms=self.ban_max_ms,
            author_pushes_per_s=self.author_pushes_per_s,
            author_push_burst=self.author_push_burst,
        )

    def admission_limits(self) -> AdmissionLimits:
        """Admission's buffer bounds; the rest keep :class:`AdmissionLimits`' defaults."""
        return AdmissionLimits(
            causal_buffer_max=self.causal_buffer_max,
            pending_buffer_max=self.pending_buffer_max,
            held_envelope_bytes_max=self.held_envelope_bytes_max,
        )


def _expanduser(path: Path) -> Path:
    """``path.expanduser()``; a ValueError, not pathlib's RuntimeError, for a ``~user`` that names
    no user (or a ``~`` without a home directory)."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError(
            f"cannot expand {path.parts[0]!r}: no such user's home directory"
        ) from None


def _check_ws_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None


def load_settings(config_file: Path | None = None, **flags: Any) -> NodeSettings:
    """Resolve flags > ``MEMMESH_*`` environment > TOML file > defaults.

    A flag whose value is None counts as not given (so CLI options can be passed straight
    through). Raises :class:`ConfigError` naming every bad setting and where it came from.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    if config_file is not None:
        given["config_file"] = config_file
    try:
        return NodeSettings(**given)
    except ValidationError as exc:
        raise _explain(exc, given) from None


# The sources.


class _EnvSource(PydanticBaseSettingsSource):
    """``MEMMESH_<SETTING>`` variables; an empty one counts as unset."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        return {name: value for name, (_, value) in _env_settings(os.environ).items()}


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file named by ``config_file``, else ``<data_dir>/memmesh.toml`` if it exists."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        # current_state holds what the flags and the environment gave, data_dir included.
        found = _config_path(self.current_state)
        return {} if found is None else _read_config_file(*found)


def _env_settings(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Setting name -> (variable, value) for every ``MEMMESH_*`` setting in ``environ``."""
    found: dict[str, tuple[str, str]] = {}
    problems: list[ConfigProblem] = []
    for var, value in sorted(environ.items()):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name in NodeSettings.model_fields:
            if name in found:
                problems.append(
                    ConfigProblem(
                        name, f"environment variable {var}", f"also set as {found[name][0]}"
                    )
                )
            elif value.strip():
                found[name] = (var, value)
        elif not name.startswith(_HARNESS_PREFIXES) and _looks_like_setting(name):
            problems.append(
                ConfigProblem(None, f"environment variable {var}", _unknown(name, prefix=True))
            )
    if problems:
        raise ConfigError(problems)
    return found


def _looks_like_setting(name: str) -> bool:
    return name.endswith(_SETTING_SUFFIXES) or bool(_close_setting(name))


def _close_setting(name: str) -> str | None:
    matches = difflib.get_close_matches(name, list(NodeSettings.model_fields), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _unknown(name: str, *, prefix: bool) -> str:
    shown = (ENV_PREFIX + name.upper()) if prefix else name
    message = f"{shown} is not a memmesh setting"
    close = _close_setting(name)
    if close is not None:
        message += f"; did you mean {(ENV_PREFIX + close.upper()) if prefix else close}?"
    return message + " (the settings: docs/operations.md, Configuration)"


def _config_path(state: Mapping[str, Any]) -> tuple[Path, bool] | None:
    """The TOML file to read and whether it was named explicitly, or None for no file."""
    named = state.get("config_file")
    try:
        if isinstance(named, str | os.PathLike):
            return _expanduser(Path(named)), True
        data_dir = state.get("data_dir", DEFAULT_DATA_DIR)
        if not isinstance(data_dir, str | os.PathLike):
            return None  # validation names the bad data_dir
        path = _expanduser(Path(data_dir)) / CONFIG_FILE_NAME
    except ValueError:
        return None  # validation names the path that does not expand
    return (path, False) if path.is_file() else None


def _parse_toml(data: bytes, source: str) -> dict[str, Any]:
    if len(data) > _CONFIG_FILE_BYTES_MAX:
        raise ConfigError([ConfigProblem(None, source, "too large to be a config file")])
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(None, source, "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(None, source, f"not valid TOML: {exc}")]) from None


def _read_config_file(path: Path, explicit: bool) -> dict[str, Any]:
    source = f"config file {path}"
    try:
        with path.open("rb") as f:
            data = f.read(_CONFIG_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(None, source, "no such file")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(None, source, f"cannot read: {exc.strerror}")]) from None
    table = _parse_toml(data, source)
    problems: list[ConfigProblem] = []
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "config_file":
            problems.append(ConfigProblem(key, source, "a config file cannot name another one"))
        elif key == "data_dir" and not explicit:
            problems.append(
                ConfigProblem(
                    key,
                    source,
                    "the data dir's own memmesh.toml cannot move the data dir; "
                    "use --config FILE or MEMMESH_DATA_DIR",
                )
            )
        elif key not in NodeSettings.model_fields:
            problems.append(ConfigProblem(None, source, _unknown(key, prefix=False)))
        elif key in _PATH_FIELDS and isinstance(value, str):
            try:
                values[key] = path.parent / _expanduser(Path(value))  # an absolute one replaces
            except ValueError as exc:
                problems.append(ConfigProblem(key, source, str(exc)))
        else:
            values[key] = value
    if problems:
        raise ConfigError(problems)
    return values


# Errors that name their source.


def _explain(exc: ValidationError, flags: Mapping[str, Any]) -> ConfigError:
    env = _env_settings(os.environ)
    state = {**{name: value for name, (_, value) in env.items()}, **flags}
    found = _config_path(state)
    file_values = _read_config_file(*found) if found is not None else {}

    def source_of(name: str) -> str | None:
        if name in flags:
            return "flag --" + name.replace("_", "-")
        if name in env:
            return f"environment variable {env[name][0]}"
        if found is not None and name in file_values:
            return f"config file {found[0]}"
        return None

    problems: list[ConfigProblem] = []
    for error in exc.errors():
        loc = error["loc"]
        if loc and isinstance(loc[0], str):
            name = loc[0]
            where = source_of(name) or "default"
            message = error["msg"].removeprefix("Value error, ")
            if name != "api_token" and where != "default":
                message += f", got {error['input']!r}"
            problems.append(ConfigProblem(name, where, message))
        else:  # a check across settings: name each one and its source
            names = str(error.get("ctx", {}).get("fields", "")).split(",")
            names = [n for n in names if n]
            where = "; ".join(f"{n}: {source_of(n) or 'default'}" for n in names)
            problems.append(ConfigProblem(", ".join(names) or None, where, error["msg"]))
    return ConfigError(problems)


# Writing files (memmesh init).

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render_config_toml(values: Mapping[str, int | bool | str], header: str = "") -> str:
    """A flat TOML document of ``values`` after ``header`` (each line becomes a comment)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in values.items():
        if key not in NodeSettings.model_fields or not _BARE_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a setting")
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int):
            rendered = str(value)
        else:
            rendered = _toml_string(value)
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` with ``mode``, atomically and durably; never replace.

    The bytes go to a temporary file in the same directory first, which is fsynced and linked
    into place: a crash leaves no file or the whole file. An existing ``path`` is a LocalError.
    """
    try:
        write_file_atomically(path, data, mode=mode)
    except FileExistsError:
        raise LocalError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise LocalError(f"{path}: cannot write: {exc.strerror}") from None
