"""nginx in front of ``feedgen serve``: the site config in ``deploy/nginx.conf`` and a way to run it.

``nginx_site(listen, upstream)`` is that file with its two addresses replaced;
``start_nginx(prefix, http, port)`` runs the Debian ``nginx`` binary as a non-daemon whose
pid, logs and temporary folders all live under ``prefix`` (no root paths, no system
service), with ``http`` as the body of its ``http { }`` block. The tests and
``benchmarks/serve.py`` start nginx this way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from feedgen.core.errors import ConfigError

__all__ = ["NGINX_PACKAGE", "NGINX_SITE", "nginx_binary", "nginx_site", "start_nginx", "stop_process"]

NGINX_SITE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
NGINX_PACKAGE = "nginx-light"
_LISTEN = re.compile(r"^(\s*listen\s+)[^;\s]+", re.MULTILINE)
_UPSTREAM = re.compile(r"^(\s*server\s+)[\w.\[\]:-]+:\d+", re.MULTILINE)


def nginx_binary() -> str:
    """The nginx executable (PATH, else /usr/sbin/nginx); says which package to install if none."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise ConfigError(f"nginx not found (looked on PATH and at /usr/sbin/nginx); install the "
                          f"Debian package: apt-get install -y {NGINX_PACKAGE}")
    return found


def nginx_site(listen: str, upstream: str, site: Path = NGINX_SITE) -> str:
    """``deploy/nginx.conf`` listening on ``listen`` and proxying to ``upstream`` (host:port)."""
    text = site.read_text()
    for pattern, value, what in ((_LISTEN, listen, "listen"), (_UPSTREAM, upstream, "upstream server")):
        text, n = pattern.subn(lambda m, v=value: m[1] + v, text)
        if n != 1:
            raise ConfigError(f"{site}: expected exactly one `{what}` address line, found {n}; "
                              "keep one `listen` in the server block and one `server host:port` in the upstream")
    return text


def _main_conf(prefix: Path, http: str, workers: int, connections: int) -> str:
    # As root, nginx would switch its workers to `nobody`, who cannot reach a private prefix.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {name}_temp_path {prefix / name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes {workers};\ndaemon off;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} warn;\n"
            f"events {{ worker_connections {connections}; }}\n"
            f"http {{\n    access_log off;\n    default_type application/octet-stream;\n{temp}"
            f"{http}\n}}\n")


def start_nginx(prefix: Path, http: str, port: int, *, workers: int = 1, connections: int = 4096,
                timeout: float = 30.0) -> subprocess.Popen:
    """Run nginx with ``http`` as its http block until it accepts on 127.0.0.1:``port``."""
    prefix = Path(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(_main_conf(prefix, http, workers, connections))
    with open(prefix / "stderr.log", "wb") as err:
        proc = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-e", str(prefix / "error.log"),
                                 "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            logs = "".join(p.read_text() for p in (prefix / "stderr.log", prefix / "error.log") if p.exists())
            raise RuntimeError(f"nginx exited with {proc.returncode} ({conf}):\n{logs}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"nginx ({conf}) did not listen on 127.0.0.1:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
