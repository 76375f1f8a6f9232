#!/usr/bin/env bash
# Copies the google/api and google/rpc protos ours import out of the
# googleapis-common-protos wheel, so buf can resolve them without a network.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
dest=.build/protodeps/google
src=$("$python" - <<'PY'
import importlib.util, pathlib
print(pathlib.Path(importlib.util.find_spec("google.api.annotations_pb2").origin).parents[1])
PY
)
mkdir -p "$dest/api" "$dest/rpc"
cp "$src"/api/annotations.proto "$src"/api/http.proto "$src"/api/httpbody.proto "$dest/api/"
cp "$src"/rpc/status.proto "$dest/rpc/"
