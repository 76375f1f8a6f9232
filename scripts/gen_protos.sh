#!/usr/bin/env bash
# Generates the Python messages, gRPC stubs and their typing stubs from proto/
# into OUT (default: clients, giving the importable package prisme.v1).
set -euo pipefail
out=${1:-clients}
python=${PYTHON:-.venv/bin/python}
bin=$(dirname "$python")
protodeps=$("$python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("google.api.annotations_pb2")
print(pathlib.Path(spec.origin).parents[2])
PY
)
mkdir -p "$out"
"$python" -m grpc_tools.protoc \
  --proto_path=proto --proto_path="$protodeps" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  proto/prisme/v1/*.proto
