#!/usr/bin/env bash
# Copies the google/api/*.proto files our protos import out of the
# googleapis-common-protos wheel, so buf can resolve them without a network.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
dest=.build/protodeps/google/api
src=$("$python" - <<'PY'
import importlib.util, pathlib
print(pathlib.Path(importlib.util.find_spec("google.api.annotations_pb2").origin).parent)
PY
)
mkdir -p "$dest"
cp "$src"/annotations.proto "$src"/http.proto "$src"/httpbody.proto "$dest"/
