"""The checked-in stubs are what grpcio-tools makes from proto/ today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).resolve().parents[1]
PROTO = SDK.parents[1] / "proto"
FILES = ["api/v1/api_pb2.py", "api/v1/api_pb2.pyi", "api/v1/api_pb2_grpc.py",
         "admin/v1/admin_pb2.py", "admin/v1/admin_pb2.pyi", "admin/v1/admin_pb2_grpc.py"]


def test_checked_in_stubs_match_the_protos(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", str(PROTO / "skm/api/v1/api.proto"), str(PROTO / "skm/admin/v1/admin.proto")],
        check=True,
    )
    drifted = [f for f in FILES if not filecmp.cmp(tmp_path / "skm" / f, SDK / "src" / "skm" / f, shallow=False)]
    assert drifted == [], f"stubs out of date with proto/: run sdk/python/generate.sh ({drifted})"
