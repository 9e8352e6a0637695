"""``memmesh init`` as a user runs it: a real process making a real data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from memmesh.crypto import read_key_file
from memmesh.membership import Role, decode_genesis

MEMMESH = [sys.executable, "-m", "memmesh"]


def run(*args: str, cwd: Path, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MEMMESH_")}
    return subprocess.run(
        [*MEMMESH, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**env, "COLUMNS": "200"},
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def found_mesh(tmp_path: Path, name: str = "founders") -> tuple[Path, dict[str, object]]:
    done = run("init", "--data-dir", "node1", "--mesh-name", name, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "node1", json.loads(done.stdout)


def test_init_founds_a_new_mesh(tmp_path: Path) -> None:
    done = run(
        "init",
        "--data-dir",
        "node1",
        "--mesh-name",
        "founders",
        "--gossip-port",
        "7500",
        "--api-port",
        "7501",
        "--json",
        cwd=tmp_path,
        umask=0,  # modes must not depend on the caller's umask
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    data = tmp_path / "node1"
    assert mode(data) == 0o700
    assert sorted(p.name for p in data.iterdir()) == [
        "admin.key",
        "agent.key",
        "genesis.bin",
        "memmesh.toml",
        "node.key",
    ]
    for name in ("admin.key", "agent.key", "node.key", "genesis.bin", "memmesh.toml"):
        assert mode(data / name) == 0o600, name

    node = read_key_file(data / "node.key")
    agent = read_key_file(data / "agent.key")
    admin = read_key_file(data / "admin.key")
    genesis = decode_genesis((data / "genesis.bin").read_bytes())
    assert genesis.name == "founders"
    assert genesis.admin == admin.public_key
    assert set(genesis.members) == {
        (admin.public_key, Role.ADMIN),
        (node.public_key, Role.NODE),
        (agent.public_key, Role.WRITER),
    }
    assert out == {
        "data_dir": "node1",
        "founded": True,
        "mesh_name": "founders",
        "mesh_id": genesis.mesh_id.hex(),
        "node_public_key": node.public_key.hex(),
        "agent_public_key": agent.public_key.hex(),
        "admin_public_key": admin.public_key.hex(),
        "admin_key_file": "node1/admin.key",
        "genesis_file": "node1/genesis.bin",
        "config_file": "node1/memmesh.toml",
        "needs_admission": [],
    }
    config = (data / "memmesh.toml").read_text()
    assert config.startswith("# ")
    assert tomllib.loads(config) == {"gossip_port": 7500, "api_port": 7501}


def test_the_written_config_is_what_a_node_reads(tmp_path: Path) -> None:
    from memmesh.config import load_settings

    data, _ = found_mesh(tmp_path)
    s = load_settings(data_dir=data)
    assert (s.gossip_port, s.api_port) == (7400, 7401)
    assert s.node_key_path == data / "node.key"
    assert s.genesis_path == data / "genesis.bin"


def test_init_joins_a_mesh_with_its_genesis(tmp_path: Path) -> None:
    first, founded = found_mesh(tmp_path)
    done = run(
        "init",
        "--data-dir",
        "node2",
        "--genesis",
        str(first / "genesis.bin"),
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    data = tmp_path / "node2"
    assert sorted(p.name for p in data.iterdir()) == [
        "agent.key",
        "genesis.bin",
        "memmesh.toml",
        "node.key",
    ]
    assert (data / "genesis.bin").read_bytes() == (first / "genesis.bin").read_bytes()
    node = read_key_file(data / "node.key")
    agent = read_key_file(data / "agent.key")
    assert out["founded"] is False
    assert out["mesh_id"] == founded["mesh_id"]
    assert out["mesh_name"] == "founders"
    assert out["admin_public_key"] is None
    assert out["needs_admission"] == [
        {"public_key": node.public_key.hex(), "role": "node"},
        {"public_key": agent.public_key.hex(), "role": "writer"},
    ]
    # The joiner is not in the genesis: an admin has to admit it.
    genesis = decode_genesis((data / "genesis.bin").read_bytes())
    assert node.public_key not in {key for key, _ in genesis.members}


def test_joining_says_what_an_admin_must_do(tmp_path: Path) -> None:
    first, _ = found_mesh(tmp_path)
    done = run("init", "--data-dir", "node2", "--genesis", str(first / "genesis.bin"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    node = read_key_file(tmp_path / "node2" / "node.key")
    text = " ".join(done.stdout.split())
    assert "an admin must admit" in text
    assert f"node key {node.public_key.hex()} (role node)" in text
    assert "(role writer)" in text


def test_init_refuses_a_data_dir_that_has_a_node_key(tmp_path: Path) -> None:
    data, _ = found_mesh(tmp_path)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    again = run("init", "--data-dir", "node1", cwd=tmp_path)
    assert again.returncode == 1
    assert "already holds a node key" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_init_refuses_to_overwrite_what_a_failed_init_left(tmp_path: Path) -> None:
    data = tmp_path / "node1"
    data.mkdir()
    (data / "genesis.bin").write_bytes(b"left over")
    done = run("init", "--data-dir", "node1", cwd=tmp_path)
    assert done.returncode == 1
    assert "refusing to overwrite" in done.stderr
    assert sorted(p.name for p in data.iterdir()) == ["genesis.bin"]


def test_an_invalid_genesis_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01not a genesis")
    done = run("init", "--data-dir", "node2", "--genesis", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "not a valid genesis" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "node2").exists()
    missing = run("init", "--data-dir", "node2", "--genesis", "nope.bin", cwd=tmp_path)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


def test_mesh_name_is_only_for_a_new_mesh(tmp_path: Path) -> None:
    first, _ = found_mesh(tmp_path)
    done = run(
        "init",
        "--data-dir",
        "node2",
        "--genesis",
        str(first / "genesis.bin"),
        "--mesh-name",
        "x",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "--mesh-name" in done.stderr
    assert not (tmp_path / "node2").exists()


def test_a_bad_port_is_refused(tmp_path: Path) -> None:
    done = run("init", "--data-dir", "node1", "--gossip-port", "70000", cwd=tmp_path)
    assert done.returncode == 1
    assert "gossip_port" in done.stderr
    assert "--gossip-port" in done.stderr
    assert not (tmp_path / "node1").exists()
