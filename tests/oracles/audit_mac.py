#!/usr/bin/env python3
"""Independent check of kms-api's audit log MACs, from the documented
derivation alone (kms-api/src/audit.rs, audit/format.rs and
crates/skm-crypto/src/audit.rs), with Python's standard library.

    audit_mac.py LOG VERSION=HEX_SYSTEM_KEY [VERSION=HEX ...]

Prints "N entries verified" and exits 0 when every line's MAC, sequence
number and chain value check out; otherwise names the first bad line and
exits 1.

Derivations (per system key version V, key K_V):
  format 1: audit key = HMAC-SHA256(K_V, "skm.audit-key.v1")
  format 2: audit key = HKDF-SHA256(salt = none, ikm = K_V,
            info = "skm.audit.v2", L = 32)
  mac = HMAC-SHA256(audit key, canonical bytes)
Canonical bytes: compact JSON of the entry without "mac", fields in the
documented order; format 1 has no "format" field and none of the fields
format 2 added; format 2 leaves out added fields that are absent.
"""

import hashlib
import hmac
import json
import sys

EVENT_FIELDS_V1 = ["time", "operation", "keystore_id", "key_id", "key_version", "caller", "result"]
CALLER_FIELDS_V1 = ["ip", "mac", "mac_source", "cert_sha256", "operator"]


def hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()  # RFC 5869: no salt = HashLen zeros
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # T(1) is the whole 32-byte output


def audit_key(system_key: bytes, fmt: int) -> bytes:
    if fmt == 1:
        return hmac.new(system_key, b"skm.audit-key.v1", hashlib.sha256).digest()
    if fmt == 2:
        return hkdf_sha256(system_key, b"skm.audit.v2")
    raise ValueError(f"unknown format {fmt}")


def canonical(entry: dict) -> bytes:
    fmt = entry.get("format", 1)
    ev = entry["event"]
    caller = {name: ev["caller"][name] for name in CALLER_FIELDS_V1}
    event = {}
    for name in EVENT_FIELDS_V1:
        if name == "operation":
            event["operation"] = ev["operation"]
            if fmt == 2 and ev.get("front_end") is not None:
                event["front_end"] = ev["front_end"]
        elif name == "caller":
            if fmt == 2 and ev["caller"].get("system") is not None:
                caller["system"] = ev["caller"]["system"]
            event["caller"] = caller
        else:
            event[name] = ev[name]
    if fmt == 2 and ev.get("intent_seq") is not None:
        event["intent_seq"] = ev["intent_seq"]
    if fmt == 2 and ev.get("lost") is not None:
        event["lost"] = ev["lost"]
    obj = {}
    if fmt != 1:
        obj["format"] = fmt
    obj.update({"seq": entry["seq"], "event": event, "key_version": entry["key_version"], "prev": entry["prev"]})
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def main() -> int:
    path, keys = sys.argv[1], {}
    for arg in sys.argv[2:]:
        version, key = arg.split("=", 1)
        keys[int(version)] = bytes.fromhex(key)
    prev, seq, count = "0" * 64, 1, 0
    with open(path, "rb") as log:
        for number, line in enumerate(log, start=1):
            entry = json.loads(line)
            key = audit_key(keys[entry["key_version"]], entry.get("format", 1))
            mac = hmac.new(key, canonical(entry), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(mac, entry["mac"]):
                print(f"line {number}: MAC mismatch (expected {mac})")
                return 1
            # An acknowledged loss bridges exactly the gap it names.
            lost = entry["event"].get("lost")
            bridged = lost is not None and lost["first_seq"] == seq and lost["last_seq"] + 1 == entry["seq"]
            if (entry["seq"] != seq and not bridged) or entry["prev"] != prev:
                print(f"line {number}: chain broken")
                return 1
            prev, seq, count = entry["mac"], entry["seq"] + 1, count + 1
    print(f"{count} entries verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
