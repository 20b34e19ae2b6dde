"""The command line: `cdragon version`, `cdragon check-config FILE`, and `serve` with a
TOML config file, CDRAGON_* environment variables and flags (flags > env > file).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO, VERSION, assert_error, unique_account


def run_cli(*args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cdragon", *args], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_version():
    p = run_cli("version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"cdragon {VERSION}")


def test_check_config_valid(tmp_path):
    f = tmp_path / "ok.toml"
    f.write_text('listen = "127.0.0.1:9999"\nmax_ops = 50\nheader_timeout = 2.5\n'
                 'idle_timeout = 30\ndata_dir = "/tmp/x"\n')
    p = run_cli("check-config", str(f))
    assert p.returncode == 0, p.stderr
    p = run_cli("check-config", "--config", str(f))
    assert p.returncode == 0, p.stderr


def test_check_config_empty_file_is_valid(tmp_path):
    f = tmp_path / "empty.toml"
    f.write_text("")
    assert run_cli("check-config", str(f)).returncode == 0


@pytest.mark.parametrize("text,needle", [
    ("max_opps = 5\n", "max_opps"),
    ('max_ops = "many"\n', "max_ops"),
    ("max_ops = 1.5\n", "max_ops"),
    ("max_ops = true\n", "max_ops"),
    ('header_timeout = "soon"\n', "header_timeout"),
    ("listen = 8081\n", "listen"),
    ("max_ops = 0\n", "max_ops"),
    ("idle_timeout = -1\n", "idle_timeout"),
    ("max_ops = = 5\n", ""),
    ("[section\nx=1\n", ""),
    ('listen = "127.0.0.1:99999"\n', "listen"),
])
def test_check_config_rejects_bad_files(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    p = run_cli("check-config", str(f))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "no message on stderr"
    assert needle in p.stderr


def test_check_config_missing_file(tmp_path):
    p = run_cli("check-config", str(tmp_path / "nope.toml"))
    assert p.returncode == 2
    assert p.stderr.strip()


def test_serve_with_bad_config_exits_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("no_such_setting = 1\n")
    p = run_cli("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), "--config", str(f))
    assert p.returncode == 2
    assert "no_such_setting" in p.stderr


def test_serve_with_bad_env_exits_2(tmp_path):
    p = run_cli("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                env_extra={"CDRAGON_MAX_OPS": "lots"})
    assert p.returncode == 2
    assert "CDRAGON_MAX_OPS" in p.stderr


def test_config_file_settings_apply(server_factory, tmp_path):
    f = tmp_path / "cd.toml"
    f.write_text("max_ops = 3\n")
    srv = server_factory(config=str(f))
    c = srv.client()
    acc = unique_account("cfg")
    assert c.db_ok(acc, {"KVGet": ["a", "b", "c"]})["KV"][2] == {"Key": "c", "Version": 0}
    assert_error(c.db(acc, {"KVGet": ["a", "b", "c", "d"]}), 413, "too_large")
    c.close()


def test_env_overrides_config_file(server_factory, tmp_path):
    f = tmp_path / "cd.toml"
    f.write_text("max_ops = 3\n")
    srv = server_factory(config=str(f), env={"CDRAGON_MAX_OPS": "5"})
    c = srv.client()
    acc = unique_account("env")
    assert len(c.db_ok(acc, {"KVGet": ["a", "b", "c", "d", "e"]})["KV"]) == 5
    assert_error(c.db(acc, {"KVGet": ["a", "b", "c", "d", "e", "f"]}), 413, "too_large")
    c.close()


def test_flags_override_config_file(server_factory, tmp_path):
    # the file names another port and data dir; the flags given by the fixture win
    f = tmp_path / "cd.toml"
    f.write_text('listen = "127.0.0.1:1"\ndata_dir = "/nonexistent/should-not-be-used"\n')
    srv = server_factory(config=str(f))
    c = srv.client()
    acc = unique_account("flags")
    assert c.put(f"/db/{acc}/kv/k", 1).status == 200
    c.close()
    assert os.path.isdir(srv.data_dir) and os.listdir(srv.data_dir)


def test_missing_data_dir_is_created(server_factory, tmp_path):
    d = tmp_path / "deep" / "new" / "data"
    srv = server_factory(data_dir=d)
    c = srv.client()
    acc = unique_account("mkdir")
    assert c.put(f"/db/{acc}/kv/k", "v").json == {"Key": "k", "Version": 1}
    c.close()
    assert d.is_dir() and any(d.iterdir())
    srv.restart()
    c = srv.client()
    assert c.get(f"/db/{acc}/kv/k").json == {"Key": "k", "Value": "v", "Version": 1}
    c.close()
