#!/usr/bin/env bash
# Regenerates the checked-in stubs src/skm/{api,admin}/v1/*_pb2*.py{,i} from
# proto/ with grpcio-tools (pinned in pyproject.toml's `test` extra, so
# tests/test_stubs.py can tell when they drift from the protos).
#   sdk/python/generate.sh [PYTHON]     (default: the repository's .venv-tests)
set -euo pipefail
cd "$(dirname "$0")"
python=${1:-../../.venv-tests/bin/python3}
"$python" -m grpc_tools.protoc -I ../../proto --python_out=src --pyi_out=src --grpc_python_out=src \
    ../../proto/skm/api/v1/api.proto ../../proto/skm/admin/v1/admin.proto
