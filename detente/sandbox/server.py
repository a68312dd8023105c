"""Run the two sandbox CRMs: HTTPS on 127.0.0.1 with a certificate from a local CA.

``Sandbox`` owns the world, the TLS material and both servers. It runs in the foreground
for ``detente sandbox`` or on a background thread for tests and the demo.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
import uvicorn

from detente.sandbox.control import Control
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.store import World


class _QuietShutdown(logging.Filter):
    """uvicorn reports at error level that idle keep-alive connections outlived the graceful
    shutdown; for a sandbox that is the normal way to stop, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "timeout graceful shutdown exceeded" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietShutdown())


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, reused when already there."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if all(p.exists() for p in (files.ca, files.cert, files.key)):
        return files
    ca = trustme.CA(organization_name="detente sandbox")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    os.chmod(files.key, 0o600)
    return files


@dataclass(frozen=True)
class SandboxInfo:
    salesforce: str
    hubspot: str
    ca: Path
    state_dir: Path

    def ready_line(self) -> str:
        return json.dumps({
            "event": "sandbox.ready",
            "salesforce": self.salesforce,
            "hubspot": self.hubspot,
            "ca": str(self.ca),
            "state_dir": str(self.state_dir),
        })


class Sandbox:
    """Both CRM servers over one world."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        dataset: str = "demo",
        size: int = 1000,
        seed: int = 1,
        as_of: datetime | None = None,
        host: str = "127.0.0.1",
        salesforce_port: int = 0,
        hubspot_port: int = 0,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="detente-sandbox-")
            state_dir = Path(self._tmp.name)
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.ports = (salesforce_port, hubspot_port)
        self.world = World(self.state_dir / "world.sqlite3")
        self.credentials = SandboxCredentials.for_world(self.world)
        self.tls = make_tls(self.state_dir / "tls")
        self.sf_control = Control("salesforce")
        self.hs_control = Control("hubspot")
        self.generation = dict(dataset=dataset, size=size, seed=seed,
                               as_of=(as_of or datetime.now(UTC)).replace(microsecond=0))
        if self.world.get_meta("generated") is None:
            self.populate()
        self.world.log_writes = True
        self.sf_control.restore_data = self.restore
        self.hs_control.restore_data = self.restore
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.info: SandboxInfo | None = None

    def populate(self) -> None:
        """Generate the world (once per state directory)."""
        from detente.sandbox.generate import generate_world

        manifest = generate_world(self.world, **self.generation)  # type: ignore[arg-type]
        (self.state_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
        self.world.set_meta("generated", {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.generation.items()
        })

    def restore(self) -> None:
        """Throw away every change and generate the same world again (same parameters)."""
        self.world.log_writes = False
        self.world.clear()
        self.populate()
        self.world.log_writes = True

    def manifest(self) -> dict[str, Any]:
        path = self.state_dir / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _apps(self) -> tuple[Any, Any]:
        from detente.sandbox.hubspot import build_hubspot_app
        from detente.sandbox.salesforce import build_salesforce_app

        return (
            build_salesforce_app(self.world, self.sf_control, self.credentials, self),
            build_hubspot_app(self.world, self.hs_control, self.credentials, self),
        )

    def _bind(self, port: int) -> socket.socket:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
        # without it every small response waits for the peer's delayed ACK (~40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    async def serve(self) -> None:
        """Serve both APIs until stopped."""
        sf_app, hs_app = self._apps()
        socks = [self._bind(self.ports[0]), self._bind(self.ports[1])]
        self._servers = [
            uvicorn.Server(uvicorn.Config(
                app, ssl_certfile=str(self.tls.cert), ssl_keyfile=str(self.tls.key),
                log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
                timeout_graceful_shutdown=1,
            ))
            for app in (sf_app, hs_app)
        ]
        sf_port, hs_port = (s.getsockname()[1] for s in socks)
        self.info = SandboxInfo(
            salesforce=f"https://{self.host}:{sf_port}",
            hubspot=f"https://{self.host}:{hs_port}",
            ca=self.tls.ca,
            state_dir=self.state_dir,
        )
        tasks = [asyncio.create_task(srv.serve(sockets=[sock])) for srv, sock in zip(self._servers, socks, strict=True)]
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        self._ready.set()
        await asyncio.gather(*tasks)

    def start(self, timeout: float = 60) -> SandboxInfo:
        """Serve on a background thread; return once both servers accept connections."""

        def run() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, name="detente-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error or self.info is None:
            raise RuntimeError(f"the sandbox did not start: {self._error!r}")
        return self.info

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.world.conn.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def settings_dict(self) -> dict[str, Any]:
        """detente's settings that point at this sandbox (credentials included)."""
        assert self.info is not None
        c = self.credentials
        key_file = self.state_dir / "jwt-private-key.pem"
        if not key_file.exists():
            key_file.write_text(c.sf_jwt_private_key)
            os.chmod(key_file, 0o600)
        return {
            "salesforce": {
                "instance_url": self.info.salesforce,
                "login_url": self.info.salesforce,
                "auth": "password",
                "client_id": c.sf_client_id,
                "client_secret": c.sf_client_secret,
                "username": c.sf_username,
                "password": c.sf_password,
                "refresh_token": c.sf_refresh_token,
                "private_key_file": str(key_file),
                "ca_file": str(self.info.ca),
            },
            "hubspot": {"base_url": self.info.hubspot, "token": c.hs_token, "ca_file": str(self.info.ca)},
        }

    def write_config(self, path: Path) -> None:
        """A detente.yaml that points detente at this sandbox (mode 0600: it holds credentials)."""
        import yaml

        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            "# Written by `detente sandbox --write-config`: points detente at the local sandbox CRMs.\n"
            "# The credentials are the sandbox's own; real ones belong in DETENTE_* variables.\n"
        )
        path.write_text(header + yaml.safe_dump(self.settings_dict(), sort_keys=False))
        os.chmod(path, 0o600)
