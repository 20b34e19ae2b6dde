#!/usr/bin/env python3
"""Run packaging/systemd-e2e.sh under a real systemd, by hand (root, Debian's
systemd-container): boots a throwaway container (this host's /usr under an overlay, a
copy of /etc, private network), runs install.sh and drives the units there, prints the
log and exits with the script's status. Build the binary first: `make binary`.

    sudo .venv/bin/python packaging/run-systemd-e2e.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        print("needs root and systemd-nspawn (apt-get install systemd-container)", file=sys.stderr)
        return 2
    if not (REPO / "dist/cdragon").exists():
        print("build the binary first: make binary", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "root", Path(tmp) / "out"
        out.mkdir()
        for d in ("usr/lib", "var", "tmp", "root", "run", "proc", "sys", "dev", "src", "out", "home"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for d in ("bin", "sbin", "lib", "lib64"):
            if Path("/" + d).is_symlink():
                (root / d).symlink_to(os.readlink("/" + d))
        shutil.copy("/usr/lib/os-release", root / "usr/lib/os-release")
        subprocess.run(["cp", "-a", "/etc", str(root / "etc")], check=True, timeout=120)
        (root / "etc/machine-id").unlink(missing_ok=True)
        system = root / "etc/systemd/system"
        for name in ("cdragon.service", "cdragon@.service"):   # only install.sh may put them there
            (system / name).unlink(missing_ok=True)
        wait_online = system / "systemd-networkd-wait-online.service"
        wait_online.unlink(missing_ok=True)
        wait_online.symlink_to("/dev/null")                   # no network to wait for
        (system / "cdragon-e2e.service").write_text(
            "[Unit]\nDescription=cdragon packaging e2e\nAfter=basic.target\n"
            "SuccessAction=poweroff-force\nFailureAction=poweroff-force\n"
            "[Service]\nType=oneshot\nExecStart=/bin/sh /src/packaging/systemd-e2e.sh\n")
        cmd = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
               "-D", str(root), "--overlay=/usr::/usr", f"--bind-ro={REPO}:/src", f"--bind={out}:/out",
               "--boot", "systemd.unit=cdragon-e2e.service"]
        subprocess.run(cmd, timeout=240, stdin=subprocess.DEVNULL, capture_output=True)
        log = (out / "log").read_text() if (out / "log").exists() else "(no log: the container did not boot)"
        print(log)
        rc = (out / "rc").read_text().strip() if (out / "rc").exists() else "1"
        return 0 if rc == "0" and "ALL OK" in log else 1


if __name__ == "__main__":
    raise SystemExit(main())
