"""The command line: `cdragon version`, `cdragon check-config FILE`, and `serve` with a
TOML config file, CDRAGON_* environment variables and flags (flags > env > file); the
`cdragon` command make setup installs into .venv, its help, --version, unknown CDRAGON_*
variables, and check-config's listen and data_dir checks.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from helpers import REPO, VERSION, assert_error, free_port, unique_account

from cdragon.config import NOT_SETTINGS, Config, env_var, setting_names

SCRIPT = REPO / ".venv" / "bin" / "cdragon"


def run_cli(*args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cdragon", *args], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def flat(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


def test_version():
    p = run_cli("version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"cdragon {VERSION}")


def test_cdragon_command_after_setup(tmp_path):
    """make setup installs the project into .venv: the console script exists, runs from
    any directory, and runs this checkout's code."""
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK), f"{SCRIPT} missing: run `make setup`"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_") and k != "PYTHONPATH"}
    p = subprocess.run([str(SCRIPT), "--version"], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"cdragon {VERSION} (Python ")
    p = subprocess.run([str(SCRIPT.parent / "python"), "-c", "import cdragon, cdragon._core; "
                        "print(cdragon.__file__); print(cdragon._core.__file__)"],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pkg, core = p.stdout.split()
    assert pkg == str(REPO / "cdragon" / "__init__.py")
    assert os.path.dirname(core) == str(REPO / "cdragon")   # the core built in place


def test_dash_dash_version_is_the_version_line():
    p = run_cli("--version", env_extra={"COLUMNS": "30"})     # never wrapped
    assert p.returncode == 0, p.stderr
    assert p.stdout == run_cli("version").stdout
    assert p.stdout.startswith(f"cdragon {VERSION} (Python ")


def test_bare_cdragon_prints_help_and_exits_2():
    p = run_cli()
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.startswith("usage: cdragon")
    for cmd in ("serve", "version", "check-config", "--version"):
        assert cmd in p.stderr
    assert "Traceback" not in p.stderr


def test_help_shows_defaults_and_variables():
    """Every serve flag names its default (from Config, not a copy) and its variable;
    the epilog lists every setting; every command of the top level has a help line."""
    top = run_cli("--help")
    assert top.returncode == 0
    for cmd in ("serve", "version", "check-config"):
        assert re.search(rf"^\s+{cmd}\s*\n?\s+\S", top.stdout, re.M), (cmd, top.stdout)
    assert f"(default {Config.listen})" in flat(top.stdout)        # serve's line
    p = run_cli("serve", "--help")
    assert p.returncode == 0, p.stderr
    options = flat(p.stdout.split("options:", 1)[1].split("every setting", 1)[0])
    flags = re.findall(r"(--[a-z][a-z-]*)", options)
    assert {"--listen", "--data-dir", "--config"} <= set(flags)
    for flag in set(flags) - {"--help"}:
        text = options.split(flag, 1)[1].split(" --", 1)[0]
        assert "(default " in text, (flag, text)
        name = flag[2:].replace("-", "_")
        if name in setting_names():
            assert f"(default {getattr(Config, name)}; {env_var(name)})" in text, (flag, text)
    assert "(default 127.0.0.1:8081; CDRAGON_LISTEN)" in options   # the form the issue asks for
    epilog = p.stdout.split("every setting", 1)[1]
    for name in setting_names():
        assert re.search(rf"^  {name} = {re.escape(str(getattr(Config, name)))}\s+{env_var(name)}$",
                         epilog, re.M), name
    for var in NOT_SETTINGS:
        assert var in flat(epilog)
    for cmd in ("check-config", "version"):
        h = run_cli(cmd, "--help")
        assert h.returncode == 0 and h.stdout.startswith(f"usage: cdragon {cmd}")
    assert "(default none" in flat(run_cli("check-config", "--help").stdout)


def test_unknown_cdragon_variable_is_refused(tmp_path):
    data = tmp_path / "d"
    port = free_port()
    p = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                env_extra={"CDRAGON_MAX_OPZ": "5"})
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "CDRAGON_MAX_OPZ" in lines[0] and "did you mean CDRAGON_MAX_OPS" in lines[0]
    assert not data.exists()          # refused before anything started
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    p = run_cli("check-config", env_extra={"CDRAGON_MAX_OPZ": "5", "CDRAGON_BOGUS": "1"})
    assert p.returncode == 2
    line, = p.stderr.strip().splitlines()
    assert "CDRAGON_MAX_OPZ" in line and "CDRAGON_BOGUS" in line
    assert "config ok" not in p.stdout


def test_variables_that_are_not_settings_are_accepted(tmp_path):
    env = {var: "1" for var in NOT_SETTINGS}
    env["CDRAGON_DATA_DIR"] = str(tmp_path / "d")
    p = run_cli("check-config", env_extra=env)
    assert p.returncode == 0, p.stderr
    assert "CDRAGON_DATA_DIR" in p.stdout
    for var in NOT_SETTINGS:          # not reported as settings taken from the environment
        assert var not in p.stdout


def test_check_config_listen_must_resolve(tmp_path):
    # glibc refuses a name with a space itself: no DNS query, so no network needed
    # (a .invalid name is sent to the configured DNS server here)
    p = run_cli("check-config", env_extra={"CDRAGON_LISTEN": "bad host:80",
                                            "CDRAGON_DATA_DIR": str(tmp_path / "d")})
    assert p.returncode == 2
    line, = p.stderr.strip().splitlines()
    assert line.startswith("cdragon: config error: listen bad host:80: ") and "resolve" in line
    for listen in ("localhost:8081", "[::1]:8081", "0.0.0.0:80"):   # resolved from /etc/hosts or numeric
        p = run_cli("check-config", env_extra={"CDRAGON_LISTEN": listen, "CDRAGON_DATA_DIR": str(tmp_path)})
        assert p.returncode == 0, (listen, p.stderr)


def test_check_config_data_dir_must_be_usable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for data_dir in (f / "data", f / "deeper" / "data"):      # under a regular file
        cfg = tmp_path / "cd.toml"
        cfg.write_text(f'data_dir = "{data_dir}"\n')
        p = run_cli("check-config", str(cfg))
        assert p.returncode == 2
        line, = p.stderr.strip().splitlines()
        assert line == f"cdragon: config error: data_dir {data_dir} cannot be created: {f} is not a directory"
    p = run_cli("check-config", env_extra={"CDRAGON_DATA_DIR": str(f)})   # a file itself
    assert p.returncode == 2
    assert p.stderr.strip() == f"cdragon: config error: data_dir {f} is not a directory"
    # a missing directory with a writable parent is fine, and is not created by the check
    missing = tmp_path / "new" / "data"
    p = run_cli("check-config", env_extra={"CDRAGON_DATA_DIR": str(missing)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith(f"data_dir={missing}")
    assert not (tmp_path / "new").exists()


def test_check_config_reports_every_problem(tmp_path):
    p = run_cli("check-config", env_extra={"CDRAGON_LISTEN": "bad host:80",
                                            "CDRAGON_DATA_DIR": "/dev/null/data"})
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2 and "listen" in lines[0] and "/dev/null" in lines[1], lines


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
