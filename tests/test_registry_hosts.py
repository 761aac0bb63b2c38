"""Plain HTTP and credentials go only where they are safe: the loopback check is exact, a
plain-HTTP token realm off this machine never receives credentials, and a failing credential
helper's output (which may hold the secret) never reaches the user."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import registry_fixtures as fx
from registry_fixtures import RegistryServer, unique_repo

from graphbuild.registry.client import RegistryClient
from graphbuild.registry.credentials import Credentials
from graphbuild.registry.errors import AuthenticationError
from graphbuild.registry.hosts import is_loopback
from graphbuild.workspace import load as load_workspace

basic_registry = fx.basic_registry
SECRET = "hunter2-from-the-helper"


@pytest.mark.parametrize("host", ["127.0.0.1.example.com:5000", "127.evil.com", "localhost.evil.com",
                                  "localhostx:5000", "1270.0.0.1", "app.localhost:80"])
def test_names_that_only_look_local_are_remote(host: str, tmp_path: Path) -> None:
    assert not is_loopback(host)
    assert RegistryClient(host).base_url.startswith("https://")
    (tmp_path / "WORKSPACE.yaml").write_text("")
    assert not load_workspace(str(tmp_path)).insecure(host)


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.3.2.1", "localhost:5000", "[::1]:5000",
                                  "::1"])
def test_loopback_addresses_and_localhost_are_local(host: str, tmp_path: Path) -> None:
    assert is_loopback(host)
    (tmp_path / "WORKSPACE.yaml").write_text("")
    assert load_workspace(str(tmp_path)).insecure(host)


class _RemoteRealm(BaseHTTPRequestHandler):
    """A registry on 127.0.0.1 whose Bearer challenge names a plain-HTTP realm elsewhere."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate",
                         'Bearer realm="http://tokens.example.com/token",service="reg"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("insecure", [False, True])
def test_credentials_never_go_to_a_plain_http_realm_off_this_machine(insecure: bool) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RemoteRealm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RegistryClient(f"127.0.0.1:{server.server_port}", insecure=insecure,
                                credentials=Credentials("alice", SECRET))
        with pytest.raises(AuthenticationError, match="refusing to send credentials.*tokens.example.com"):
            client.get_manifest("team/app", "latest")
    finally:
        server.shutdown()


def _failing_helper(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-leaky"
    program.write_text(f"#!{sys.executable}\nimport sys\nprint('token={SECRET}')\n"
                       f"print('also {SECRET}', file=sys.stderr)\nsys.exit(4)\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def test_a_failing_helper_is_named_with_its_status_only(
        ws, tmp_path: Path, basic_registry: RegistryServer) -> None:
    env = _failing_helper(tmp_path)
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"credHelpers": {basic_registry.host: "leaky"}}))
    env["DOCKER_CONFIG"] = str(config)
    tag = f"{basic_registry.host}/{unique_repo()}:1"
    ws.write({
        "p/BUILD.yaml": f"img: {{rule: image, platforms: [linux/amd64], tags: ['{tag}']}}\n",
        "p/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "p/f": "x\n",
    })
    events = tmp_path / "events.jsonl"
    res = ws.run_subprocess("run", "//p:img", "--push", "--output", "json",
                            "--events", str(events), env=env)
    assert res.code == 1, res
    text = res.out + res.err + (events.read_text() if events.exists() else "")
    assert "docker-credential-leaky" in text and "exit status 4" in text
    assert SECRET not in text
