"""A real SKM stack for the REST/JSON front end's tests (issue 16).

`skm dev --data-dir D --port-base B` on a temporary directory (the binary is
$SKM_BIN, else target/debug/skm), its stderr (every tier's log) captured to a
file, keystores and keys made with the `skm` CLI over the operator profile,
REST on B+7 as D/app/profile.toml's `rest_endpoint` says, TLS verified with
D/app/ca.pem. gRPC comparisons go through the Python SDK (`skm`) with the same
application profile.

Nothing here skips: a missing prerequisite fails with what to install.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv-tests" / "bin" / "python3")
INSTALL = (
    "create the test venv: cd " + str(REPO) + " && python3 -m venv .venv-tests && "
    ".venv-tests/bin/pip install cryptography 'sdk/python[test]' requests jsonschema"
)


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:  # pragma: no cover - only when the venv is incomplete
        pytest.fail(f"python module {module!r} is missing ({e}); {INSTALL}", pytrace=False)


if sys.version_info < (3, 11):  # pragma: no cover
    pytest.fail("these tests need Python >= 3.11 (tomllib); use " + PY, pytrace=False)
import tomllib  # noqa: E402

# The SDK of this tree, not a copy pip installed into the venv earlier: the
# gRPC comparisons must see the RPCs and types the protos have today.
sys.path.insert(0, str(REPO / "sdk" / "python" / "src"))
requests = _require("requests")
_require("jsonschema")
_require("cryptography")
_require("skm")

# gRPC status codes (google.rpc.Code) and the HTTP status of each (rest-spec.md).
CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
HTTP = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
COMPAT_VERSIONS = ["v1.0", "v1.1", "v1.2", "v1.3"]
# Submitted as a value in the bad-input table; must never come back, nor reach the log.
MARKER = "ZQX-MARKER-7f3a9c1e"
MAC = "02:00:00:00:00:01"
OTHER_MAC = "02:00:00:00:00:02"


# ---------------------------------------------------------------- shapes

class B64:
    """A string of standard base64 with padding (what every response must use)."""

    def __init__(self, length: Optional[int] = None) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"B64({self.length})"


class HEX:
    """Lowercase hex."""


class ANY:
    """Anything (checked elsewhere)."""


class Text:
    """A string that starts with the phrase the spec fixes (a server may add
    a pointer to the docs after it) and contains each of `also`."""

    def __init__(self, prefix: str, *also: str) -> None:
        self.prefix, self.also = prefix, also

    def __repr__(self) -> str:
        return f"Text({self.prefix!r}, {', '.join(map(repr, self.also))})"


def std_b64(text: Any, where: str) -> bytes:
    assert isinstance(text, str), f"{where}: expected a base64 string, got {type(text).__name__}"
    assert re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", text), (
        f"{where}: not standard padded base64: {text[:60]!r}"
    )
    return base64.b64decode(text, validate=True)


def assert_shape(value: Any, shape: Any, where: str = "$") -> None:
    """`shape`: a dict (exactly these keys), a list [item shape], a type (exact:
    bool is not int), None (JSON null), B64/HEX/ANY, a tuple (one of), or any
    other value (equal)."""
    if shape is ANY:
        return
    if isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r:.200}"
        assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
        for k, s in shape.items():
            assert_shape(value[k], s, f"{where}.{k}")
    elif isinstance(shape, list):
        assert isinstance(value, list), f"{where}: expected an array, got {value!r:.200}"
        assert len(value) == len(shape), f"{where}: {len(value)} items, expected {len(shape)}"
        for i, (v, s) in enumerate(zip(value, shape)):
            assert_shape(v, s, f"{where}[{i}]")
    elif isinstance(shape, tuple):
        errors = []
        for s in shape:
            try:
                assert_shape(value, s, where)
                return
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{where}: matches none of {shape}: {errors}")
    elif isinstance(shape, B64):
        raw = std_b64(value, where)
        if shape.length is not None:
            assert len(raw) == shape.length, f"{where}: {len(raw)} bytes, expected {shape.length}"
    elif isinstance(shape, Text):
        assert isinstance(value, str) and value.startswith(shape.prefix), f"{where}: {value!r:.200} !~ {shape}"
        assert all(a in value for a in shape.also), f"{where}: {value!r:.200} !~ {shape}"
    elif shape is HEX:
        assert isinstance(value, str) and re.fullmatch(r"(?:[0-9a-f]{2})+", value), f"{where}: not lowercase hex"
    elif shape is None:
        assert value is None, f"{where}: expected null, got {value!r:.200}"
    elif isinstance(shape, type):
        assert type(value) is shape, f"{where}: expected {shape.__name__}, got {type(value).__name__} {value!r:.100}"
    else:
        assert value == shape, f"{where}: {value!r:.200} != {shape!r:.200}"


OK_HEADER = {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": True}


def compat_error(code_name: str, message: Any = str) -> Dict[str, Any]:
    return {
        "header": {"resultCode": -CODES[code_name], "resultMessage": message, "isSuccessful": False},
        "body": None,
    }


def v1_error(code_name: str, message: Any = str) -> Dict[str, Any]:
    return {"error": {"code": CODES[code_name], "code_name": code_name, "message": message}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def assert_common_headers(r) -> None:
    """Every REST answer (rest-spec.md, "Responses")."""
    ct = r.headers.get("Content-Type", "")
    assert ct.split(";")[0].strip().lower() == "application/json", f"Content-Type {ct!r}"
    assert r.headers.get("Cache-Control", "").lower() == "no-store", f"Cache-Control {r.headers.get('Cache-Control')!r}"
    assert r.headers.get("X-Content-Type-Options", "").lower() == "nosniff", "X-Content-Type-Options"


def grpc_message(call: Callable[[], Any]) -> Tuple[str, str]:
    """(code name, message) of a gRPC call through the SDK that must fail."""
    import skm

    try:
        call()
    except skm.SkmError as e:
        return (e.code.name if e.code is not None else "LOCAL", e.message)
    raise AssertionError("the gRPC call succeeded; expected a refusal")


# ---------------------------------------------------------------- the stack

def skm_bin() -> Path:
    if os.environ.get("SKM_BIN"):
        return Path(os.environ["SKM_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "skm"


def free_port_base(count: int = 8) -> int:
    for _ in range(300):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65535 - count - 100:
            continue
        socks = []
        try:
            for i in range(count):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclass
class Stack:
    dir: Path
    operator_profile: Path
    app_profile: Path
    bin: Path
    port_base: int
    log: Path
    rest: str = ""  # "127.0.0.1:PORT"
    ca: Path = Path()
    keystores: Dict[str, str] = field(default_factory=dict)
    keys: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, Path] = field(default_factory=dict)
    session: Any = None

    def run_skm(self, *args: str, stdin: bytes = b"") -> "subprocess.CompletedProcess[bytes]":
        return subprocess.run(
            [str(self.bin), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, "SKM_PROFILE": str(self.operator_profile)},
            timeout=120,
        )

    def skm(self, *args: str, stdin: bytes = b"") -> str:
        out = self.run_skm(*args, stdin=stdin)
        if out.returncode != 0:
            raise RuntimeError(f"skm {' '.join(args)}: exit {out.returncode}: {out.stderr.decode()}")
        return out.stdout.decode().strip()

    @property
    def url(self) -> str:
        return f"https://{self.rest}"

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
        params: Optional[Dict[str, Any]] = None,
        cert: Optional[Tuple[str, str]] = None,
        content_type: Optional[str] = "application/json",
        keep_alive: bool = False,
    ):
        """One HTTPS request to the REST listener. `json_body` is serialised
        here (so that the exact bytes are known); `data` is sent as is.
        Each request has its own connection (`Connection: close`) unless
        `keep_alive`: test_connections.py checks connection reuse itself, so
        that a connection-handling bug fails there and not at random here."""
        h = dict(headers or {})
        if not keep_alive:
            h.setdefault("Connection", "close")
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
        if body is not None and content_type is not None:
            h.setdefault("Content-Type", content_type)
        return self.session.request(
            method, self.url + path, data=body, headers=h, params=params, verify=str(self.ca),
            cert=cert, timeout=30, allow_redirects=False,
        )

    def fill(self, text: str) -> str:
        """`{name}` → keystore or key id (keystores first: {ks:NAME}, keys: {NAME})."""
        def sub(m: "re.Match[str]") -> str:
            name = m.group(1)
            if name.startswith("ks:"):
                return self.keystores[name[3:]]
            return self.keys[name]
        return re.sub(r"\{([a-z_:0-9]+)\}", sub, text)


def _read_toml(path: Path) -> Dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    binary = skm_bin()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p skm` (or set SKM_BIN)", pytrace=False)
    root = tmp_path_factory.mktemp("skm-rest")
    data = root / "dev"
    log = root / "skm-dev.stderr"
    base = free_port_base(8)
    with open(log, "wb") as errf:
        # kms-api at debug level: a submitted value must not reach the log even then.
        env = {**os.environ, "RUST_LOG": "info,kms_api=debug,skm_runtime=debug"}
        proc = subprocess.Popen(
            [str(binary), "dev", "--data-dir", str(data), "--port-base", str(base)],
            stdout=subprocess.PIPE,
            stderr=errf,
            env=env,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("export SKM_PROFILE="), f"{line!r}; stderr: {log.read_text()[-2000:]}"
        s = Stack(data, Path(line.split("=", 1)[1]), data / "app" / "profile.toml", binary, base, log)
        s.skm("status", "--wait", "60")
        app = _read_toml(s.app_profile)
        assert "rest_endpoint" in app, f"{s.app_profile} has no rest_endpoint: {sorted(app)}"
        s.rest = app["rest_endpoint"]
        s.ca = data / "app" / "ca.pem"
        s.session = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                if s.call("GET", "/v1/health").status_code == 200:
                    break
            except requests.RequestException as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"REST at {s.rest} never answered: {e}") from None
            time.sleep(0.2)
        setup(s)
        yield s
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def setup(s: Stack) -> None:
    """Keystores and their policies:
    open, other (127.0.0.1), elsewhere (only 10.9.9.9), certs (certificate),
    mac_lax (MAC, asserted allowed), mac_strict (MAC, asserted not allowed),
    all_mode / any_mode (10.9.9.9 AND/OR certificate). `oaep_rot` is rotated
    by a test (test_key_types.py); the other keys keep one version."""
    ks = s.keystores
    ks["open"] = s.skm("keystore", "create", "open", "--allow-ip", "127.0.0.1")
    ks["other"] = s.skm("keystore", "create", "other", "--allow-ip", "127.0.0.1")
    ks["elsewhere"] = s.skm("keystore", "create", "elsewhere", "--allow-ip", "10.9.9.9")
    ks["certs"] = s.skm("keystore", "create", "certs", "--require-cert")
    ks["mac_lax"] = s.skm("keystore", "create", "mac-lax", "--allow-mac", MAC, "--allow-asserted-mac")
    ks["mac_strict"] = s.skm("keystore", "create", "mac-strict", "--allow-mac", MAC)
    ks["all_mode"] = s.skm(
        "keystore", "create", "all-mode", "--allow-ip", "10.9.9.9", "--require-cert", "--mode", "all")
    ks["any_mode"] = s.skm(
        "keystore", "create", "any-mode", "--allow-ip", "10.9.9.9", "--require-cert", "--mode", "any")
    k = s.keys
    for name, kind in [("aes", "aes-256"), ("aes2", "aes-256"), ("ed", "ed25519"), ("ec", "ecdsa-p256"),
                       ("rsa", "rsa-2048"), ("audit_aes", "aes-256"), ("audit_ed", "ed25519"),
                       ("hmac256", "hmac-sha256"), ("hmac384", "hmac-sha384"), ("hmac512", "hmac-sha512"),
                       ("p384", "ecdsa-p384"), ("mldsa65", "ml-dsa-65"), ("oaep2048", "rsa-oaep-2048"),
                       ("oaep3072", "rsa-oaep-3072"), ("oaep4096", "rsa-oaep-4096"), ("oaep_rot", "rsa-oaep-2048"),
                       ("audit_oaep", "rsa-oaep-2048")]:
        k[name] = s.skm("key", "create", "open", name.replace("_", "-"), "--type", kind)
    k["disabled"] = s.skm("key", "create", "open", "disabled", "--type", "aes-256")
    s.skm("key", "disable", k["disabled"])
    k["disabled_oaep"] = s.skm("key", "create", "open", "disabled-oaep", "--type", "rsa-oaep-2048")
    s.skm("key", "disable", k["disabled_oaep"])
    k["denied_oaep"] = s.skm("key", "create", "elsewhere", "oaep", "--type", "rsa-oaep-2048")
    k["secret"] = s.skm("secret", "create", "open", "db-password", stdin=b"correct horse")
    k["other_aes"] = s.skm("key", "create", "other", "aes", "--type", "aes-256")
    k["denied"] = s.skm("key", "create", "elsewhere", "aes", "--type", "aes-256")
    k["denied_secret"] = s.skm("secret", "create", "elsewhere", "pw", stdin=b"nope")
    k["missing"] = "0123456789abcdef0123456789abcdef"  # an id no key has
    k["bad_id"] = "not-an-id"
    k["cert_aes"] = s.skm("key", "create", "certs", "aes", "--type", "aes-256")
    k["lax_aes"] = s.skm("key", "create", "mac-lax", "aes", "--type", "aes-256")
    k["strict_aes"] = s.skm("key", "create", "mac-strict", "aes", "--type", "aes-256")
    k["all_aes"] = s.skm("key", "create", "all-mode", "aes", "--type", "aes-256")
    k["any_aes"] = s.skm("key", "create", "any-mode", "aes", "--type", "aes-256")
    for store in ("certs", "all-mode", "any-mode"):
        cert = s.dir / "app" / f"{store}.pem"
        key = s.dir / "app" / f"{store}.key"
        s.skm("keystore", "issue-cert", store, f"rest-{store}", "--format", "pem",
              "--out", str(cert), "--key-out", str(key))
        s.files[f"{store}_cert"] = cert
        s.files[f"{store}_key"] = key


def cert_pair(s: Stack, store: str) -> Tuple[str, str]:
    return (str(s.files[f"{store}_cert"]), str(s.files[f"{store}_key"]))


def leaf_sha256(pem_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(pem_path.read_bytes())[0]
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


@pytest.fixture(scope="session")
def grpc_client(stack: Stack):
    import skm

    with skm.Client.from_profile(stack.app_profile) as c:
        yield c


def grpc_with(stack: Stack, *, store: Optional[str] = None, mac: Optional[str] = None):
    """An SDK client with a client certificate (of keystore `store`) and/or an asserted MAC."""
    import skm

    creds = skm.from_profile(stack.app_profile)
    kwargs: Dict[str, Any] = {}
    if store is not None:
        kwargs.update(cert=stack.files[f"{store}_cert"], key=stack.files[f"{store}_key"])
    if mac is not None:
        kwargs["client_mac"] = mac
    return skm.Client(creds.address, ca=creds.ca_pem, **kwargs)


@dataclass
class Ctx:
    """Values made over gRPC before the tables run: what a decrypt or verify row needs."""

    ct_aad: str = ""          # /v1: b64 ciphertext of b"hello v1" with aad b"ctx"
    ct_plain: str = ""        # b64 ciphertext of b"hello compat" (no aad)
    ct_aes2: str = ""         # b64 ciphertext under aes2
    ed_sig: str = ""          # ed25519 over b"hello sig"
    ec_sig: str = ""          # ecdsa over b"hello sig"
    rsa_pss: str = ""         # RSA-PSS over b"hello sig"
    rsa_pkcs1: str = ""       # RSA PKCS#1 over b"hello sig"
    ct_binary: str = ""       # b64 ciphertext of bytes that are not UTF-8
    hmac_tag: str = ""        # HMAC-SHA-256 (hmac256) over b"hello mac"
    oaep_ct: str = ""         # RSA-OAEP-SHA-256 of b"hello oaep" under oaep2048, made locally by `cryptography`


@pytest.fixture(scope="session")
def ctx(stack: Stack, grpc_client) -> Ctx:
    import skm

    c = grpc_client
    k = stack.keys
    A = skm.SignatureAlgorithm
    return Ctx(
        ct_aad=b64(c.encrypt(k["aes"], b"hello v1", aad=b"ctx").ciphertext),
        ct_plain=b64(c.encrypt(k["aes"], b"hello compat").ciphertext),
        ct_aes2=b64(c.encrypt(k["aes2"], b"hello re").ciphertext),
        ed_sig=b64(c.sign(k["ed"], b"hello sig").signature),
        ec_sig=b64(c.sign(k["ec"], b"hello sig").signature),
        rsa_pss=b64(c.sign(k["rsa"], b"hello sig", algorithm=A.RSA_PSS_SHA256).signature),
        rsa_pkcs1=b64(c.sign(k["rsa"], b"hello sig", algorithm=A.RSA_PKCS1_SHA256).signature),
        ct_binary=b64(c.encrypt(k["aes"], b"\xff\xfe not utf-8").ciphertext),
        hmac_tag=b64(c.generate_mac(k["hmac256"], b"hello mac").mac),
        oaep_ct=b64(oaep_encrypt(c.get_public_key(k["oaep2048"]).pem, b"hello oaep")),
    )


def oaep_encrypt(pem: str, plaintext: bytes) -> bytes:
    """What anyone holding an rsa-oaep-* key's public key does: RSAES-OAEP, SHA-256, MGF1-SHA-256, no label."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    public = serialization.load_pem_public_key(pem.encode())
    return public.encrypt(  # type: ignore[union-attr]
        plaintext, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))


def grpc_raw(client, method: str, request: Any) -> Any:
    """One KeyService call with a request the SDK's methods cannot express (an
    AAD or key_version beside the RSA algorithm, a batch item with the RSA
    fields), on a channel with the client's credentials; a refusal raises the
    SDK's exception (for grpc_message)."""
    import grpc

    from skm.api.v1 import api_pb2_grpc
    from skm.errors import from_rpc_error

    c = client.credentials
    creds = grpc.ssl_channel_credentials(
        root_certificates=c.ca_pem, private_key=c.private_key_pem, certificate_chain=c.cert_chain_pem)
    with grpc.secure_channel(c.address, creds) as channel:
        try:
            return getattr(api_pb2_grpc.KeyServiceStub(channel), method)(request, timeout=30)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None


def grpc_decrypt_raw(client, **fields: Any) -> Any:
    """Decrypt with any DecryptRequest fields (algorithm as the proto's number)."""
    from skm.api.v1 import api_pb2

    return grpc_raw(client, "Decrypt", api_pb2.DecryptRequest(**fields))


def resolve(value: Any, stack: Stack, ctx: Ctx) -> Any:
    """Table cells: callables get (stack, ctx); strings get {name} → id; containers recurse."""
    if callable(value) and not isinstance(value, type):
        return value(stack, ctx)
    if isinstance(value, str):
        return stack.fill(value)
    if isinstance(value, dict):
        return {resolve(k, stack, ctx): resolve(v, stack, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, stack, ctx) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, stack, ctx) for v in value)
    if isinstance(value, Text):
        return Text(stack.fill(value.prefix), *(stack.fill(a) for a in value.also))
    return value
