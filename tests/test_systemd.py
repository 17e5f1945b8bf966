"""The shipped systemd units: hardened (systemd-analyze security exposure <= 1.5, offline),
valid (systemd-analyze verify), and the service's own command line really runs."""

from __future__ import annotations

import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.mailtools import free_port, gateway_config

UNITS = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not on this machine")
SLA = str(Path(sys.executable).with_name("sla-gateway"))


def local_copy(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's command (verify needs it)."""
    out = tmp_path / "units"
    out.mkdir()
    for unit in UNITS.iterdir():
        (out / unit.name).write_text(unit.read_text().replace("/usr/local/bin/sla-gateway", SLA))
    return out


@needs_systemd
@pytest.mark.parametrize("unit", ["sla-gateway.service", "sla-gateway-digest.service"])
def test_exposure_is_low(unit: str) -> None:
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(UNITS / unit)],  # type: ignore[list-item]
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 1.5


@needs_systemd
def test_units_verify_clean(tmp_path: Path) -> None:
    units = local_copy(tmp_path)
    result = subprocess.run([ANALYZE, "verify", "sla-gateway.service", "sla-gateway-digest.service",  # type: ignore[list-item]
                             "sla-gateway-digest.timer"], cwd=units, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_units_command_line_runs_the_service(tmp_path: Path, database_url: str) -> None:
    line = re.search(r"^ExecStart=(.+)$", (UNITS / "sla-gateway.service").read_text(), re.M)
    assert line
    port = free_port()
    config = gateway_config(tmp_path, database_url, listen_port=port)
    command = line.group(1).replace("/usr/local/bin/sla-gateway", SLA).replace(
        "/etc/sla-gateway/gateway.toml", str(config.path)).split()  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the service did not start listening"
                time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.ehlo()[0] == 250
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert '"message": "event=stopped"' in err  # --log-format json: one JSON object per line
