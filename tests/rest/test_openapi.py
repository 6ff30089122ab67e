"""kms-api/openapi/v1.json against the server and the contract table:
served byte for byte, every /v1 answer of the table valid against its
schema, and the document's path+method set equal to the table's."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any, Dict, Set, Tuple

import jsonschema
import pytest

from conftest import REPO
from test_contract import V1_ROWS, run

DOC_PATH = REPO / "kms-api" / "openapi" / "v1.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def load() -> Dict[str, Any]:
    assert DOC_PATH.exists(), f"{DOC_PATH} is missing"
    return json.loads(DOC_PATH.read_text())


def test_the_document_is_served_byte_for_byte(stack):
    r = stack.call("GET", "/v1/openapi.json")
    assert r.status_code == 200
    assert r.content == DOC_PATH.read_bytes(), "GET /v1/openapi.json differs from kms-api/openapi/v1.json"


def test_the_document_is_openapi_3_0_3_pretty_printed():
    text = DOC_PATH.read_text()
    doc = json.loads(text)
    assert doc["openapi"] == "3.0.3"
    assert text == json.dumps(doc, indent=2, ensure_ascii=False) + "\n", "2-space indent, trailing newline"
    # Every $ref points into components/schemas and resolves.
    for target in re.findall(r'"\$ref": "([^"]+)"', text):
        assert target.startswith("#/components/schemas/"), target
        assert target.rsplit("/", 1)[1] in doc["components"]["schemas"], target
    # Every operation documents its error body with the Error schema.
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")) and path != "/v1/health":
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def inline(node: Any, schemas: Dict[str, Any], depth: int = 0) -> Any:
    """The schema with every $ref into components/schemas replaced by its
    target, and OpenAPI's `nullable` turned into JSON Schema."""
    assert depth < 50, "recursive schema"
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            return inline(schemas[name], schemas, depth + 1)
        out = {k: inline(v, schemas, depth + 1) for k, v in node.items() if k not in ("nullable", "example")}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [inline(v, schemas, depth + 1) for v in node]
    return node


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("byte")
def _std_base64(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", value):
        return False
    base64.b64decode(value, validate=True)
    return True


def operation(doc: Dict[str, Any], template: str, method: str) -> Dict[str, Any]:
    assert template in doc["paths"], f"the document has no path {template}"
    item = doc["paths"][template]
    assert method.lower() in item, f"the document has no {method} {template}"
    return item[method.lower()]


@pytest.mark.parametrize("row", V1_ROWS, ids=[r.id for r in V1_ROWS])
def test_each_v1_answer_validates_against_its_schema(stack, ctx, row):
    doc = load()
    op = operation(doc, row.template, row.method)
    responses = op["responses"]
    assert str(row.status) in responses, f"{row.method} {row.template} documents no {row.status}"
    schema = inline(responses[str(row.status)]["content"]["application/json"]["schema"],
                    doc["components"]["schemas"])
    _, answer = run(stack, ctx, row)
    jsonschema.Draft7Validator(schema, format_checker=FORMATS).validate(answer)


def test_the_document_and_the_table_cover_each_other():
    doc = load()
    documented: Set[Tuple[str, str]] = {
        (method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS
    }
    exercised = {(r.method, r.template) for r in V1_ROWS}
    assert documented - exercised == set(), "documented but not in the contract table"
    assert exercised - documented == set(), "in the contract table but not documented"


def test_request_schemas_name_the_proto_fields():
    """The request schemas accept what the table sends (so the doc matches the server's field names)."""
    doc = load()
    from test_contract import NOBODY

    ctx_free = [r for r in V1_ROWS if r.body is not NOBODY and not _has_callable(r.body) and r.status == 200]
    assert ctx_free, "no plain request rows"
    for row in ctx_free:
        op = operation(doc, row.template, row.method)
        schema = inline(op["requestBody"]["content"]["application/json"]["schema"], doc["components"]["schemas"])
        body = copy.deepcopy(row.body)
        _fill_ids(body)
        jsonschema.Draft7Validator(schema, format_checker=FORMATS).validate(body)


def _has_callable(v: Any) -> bool:
    if callable(v):
        return True
    if isinstance(v, dict):
        return any(_has_callable(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_callable(x) for x in v)
    return False


def _fill_ids(v: Any) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, str) and x.startswith("{"):
                v[k] = "0" * 32
            else:
                _fill_ids(x)
    elif isinstance(v, list):
        for x in v:
            _fill_ids(x)
