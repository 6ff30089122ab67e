"""A real SKM stack for the SDK's tests: `skm dev` on a temporary directory
(binaries from the cargo target dir, or $SKM_BIN), keystores and keys made
with the `skm` CLI over the operator profile, and the application profile
that `skm dev` writes for the SDK."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]


def skm_bin() -> Path:
    if os.environ.get("SKM_BIN"):
        return Path(os.environ["SKM_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "skm"


def free_port_base() -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 60000:
            continue
        socks = []
        try:
            for i in range(8):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no eight consecutive free ports")


@dataclass
class Stack:
    dir: Path
    operator_profile: Path
    app_profile: Path
    bin: Path
    keys: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, Path] = field(default_factory=dict)

    def skm(self, *args: str, stdin: bytes = b"") -> str:
        out = subprocess.run(
            [str(self.bin), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, "SKM_PROFILE": str(self.operator_profile)},
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"skm {' '.join(args)}: {out.stderr.decode()}")
        return out.stdout.decode().strip()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    binary = skm_bin()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p skm` (or set SKM_BIN)")
    data = tmp_path_factory.mktemp("skm-dev")
    base = free_port_base()
    proc = subprocess.Popen(
        [str(binary), "dev", "--data-dir", str(data), "--port-base", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("export SKM_PROFILE="), line
        s = Stack(data, Path(line.split("=", 1)[1]), data / "app" / "profile.toml", binary)
        s.skm("status", "--wait", "60")
        setup(s)
        yield s
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def setup(s: Stack) -> None:
    """Keystores: `open` (127.0.0.1), `certs` (a client certificate required),
    `elsewhere` (only 10.9.9.9, so PERMISSION_DENIED here); keys of every type
    (`hmac_rot` and `oaep_rot` are rotated by tests, so the others keep one version)."""
    s.skm("keystore", "create", "open", "--allow-ip", "127.0.0.1")
    s.skm("keystore", "create", "certs", "--require-cert")
    s.skm("keystore", "create", "elsewhere", "--allow-ip", "10.9.9.9")
    for name, kind in [("aes", "aes-256"), ("aes2", "aes-256"), ("ed", "ed25519"), ("ec", "ecdsa-p256"), ("rsa", "rsa-2048")]:
        s.keys[name] = s.skm("key", "create", "open", name, "--type", kind)
    for name, kind in [("hmac256", "hmac-sha256"), ("hmac384", "hmac-sha384"), ("hmac512", "hmac-sha512"),
                       ("hmac_rot", "hmac-sha256"), ("p384", "ecdsa-p384"), ("mldsa44", "ml-dsa-44"),
                       ("mldsa65", "ml-dsa-65"), ("mldsa87", "ml-dsa-87"), ("oaep2048", "rsa-oaep-2048"),
                       ("oaep3072", "rsa-oaep-3072"), ("oaep4096", "rsa-oaep-4096"), ("oaep_rot", "rsa-oaep-2048")]:
        s.keys[name] = s.skm("key", "create", "open", name.replace("_", "-"), "--type", kind)
    s.keys["disabled"] = s.skm("key", "create", "open", "disabled", "--type", "aes-256")
    s.skm("key", "disable", s.keys["disabled"])
    s.keys["cert_aes"] = s.skm("key", "create", "certs", "aes", "--type", "aes-256")
    s.keys["denied"] = s.skm("key", "create", "elsewhere", "aes", "--type", "aes-256")
    s.keys["denied_hmac"] = s.skm("key", "create", "elsewhere", "hmac", "--type", "hmac-sha256")
    s.keys["denied_oaep"] = s.skm("key", "create", "elsewhere", "oaep", "--type", "rsa-oaep-2048")
    s.keys["disabled_oaep"] = s.skm("key", "create", "open", "disabled-oaep", "--type", "rsa-oaep-2048")
    s.skm("key", "disable", s.keys["disabled_oaep"])
    s.keys["secret"] = s.skm("secret", "create", "open", "db-password", stdin=b"correct horse")
    pw = s.dir / "p12-password"
    pw.write_text("a long enough password\n")
    s.files["p12"] = s.dir / "app" / "client.p12"
    s.files["p12_password"] = pw
    s.skm("keystore", "issue-cert", "certs", "py-p12", "--out", str(s.files["p12"]), "--password-file", str(pw))
    s.files["cert"] = s.dir / "app" / "client.pem"
    s.files["key"] = s.dir / "app" / "client.key"
    s.skm(
        "keystore", "issue-cert", "certs", "py-pem", "--format", "pem",
        "--out", str(s.files["cert"]), "--key-out", str(s.files["key"]),
    )


@pytest.fixture()
def client(stack: Stack):
    import skm

    with skm.Client.from_profile(stack.app_profile) as c:
        yield c
