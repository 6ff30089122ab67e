"""A keystore's alias as the appkey of the compatible paths: an operator
sets it (`skm keystore create --alias`, `skm keystore set-alias`), so that a
client of the modelled service keeps the appkey in its URLs. The alias names
exactly one keystore, moves, and can be removed."""

from __future__ import annotations

import json

from conftest import assert_shape, compat_error

APPKEY = "6Yb3wPyDnDnzlnOQ"


def encrypt(stack, appkey: str, key: str):
    return stack.call("POST", f"/keymanager/v1.2/appkey/{appkey}/symmetric-keys/{key}/encrypt",
                      json_body={"plaintext": "through an alias"})


def test_an_alias_names_its_keystore_and_only_while_it_has_it(stack):
    ks = stack.skm("keystore", "create", "aliased", "--allow-ip", "127.0.0.1", "--alias", APPKEY)
    key = stack.skm("key", "create", "aliased", "aes", "--type", "aes-256")
    shown = json.loads(stack.skm("--json", "keystore", "show", "aliased"))
    assert (shown["id"], shown["alias"]) == (ks, APPKEY)

    for appkey in (APPKEY, ks):
        r = encrypt(stack, appkey, key)
        assert r.status_code == 200, (appkey, r.text)
        assert r.json()["header"]["isSuccessful"] is True
    # Another keystore's alias or id: the key is not found there.
    other = encrypt(stack, stack.keystores["open"], key)
    assert other.status_code == 404, other.text
    assert_shape(other.json(), compat_error("NOT_FOUND", f"key {key} not found"))

    # Taken: a second keystore can't have it.
    taken = stack.run_skm("keystore", "create", "aliased-2", "--allow-ip", "127.0.0.1", "--alias", APPKEY)
    assert taken.returncode != 0 and "taken" in taken.stderr.decode(), taken.stderr

    # Moved: the old alias no longer names it.
    stack.skm("keystore", "set-alias", "aliased", "moved-appkey")
    assert encrypt(stack, "moved-appkey", key).status_code == 200
    assert encrypt(stack, APPKEY, key).status_code == 404
    # The policy stayed.
    assert json.loads(stack.skm("--json", "keystore", "show", "aliased"))["allow_ips"] == ["127.0.0.1"]

    # Removed.
    stack.skm("keystore", "set-alias", "aliased", "--clear")
    assert encrypt(stack, "moved-appkey", key).status_code == 404
    assert encrypt(stack, ks, key).status_code == 200
    assert json.loads(stack.skm("--json", "keystore", "show", "aliased"))["alias"] == ""


def test_an_alias_that_reads_as_an_id_is_refused(stack):
    bad = stack.run_skm("keystore", "create", "hexy", "--allow-ip", "127.0.0.1", "--alias", "ab" * 16)
    assert bad.returncode != 0 and "read as an id" in bad.stderr.decode(), bad.stderr
