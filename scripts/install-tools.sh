#!/usr/bin/env bash
# Installs every tool the tests and the packaging need into a project-local Python
# environment (.tools/venv), pinned, from PyPI. Idempotent: a second run only checks.
#   cargo-lambda  — `cargo lambda watch/invoke/build` for the end-to-end tests and packaging
#   moto[server]  — the AWS-compatible emulator the DynamoDB/EC2/RDS adapter tests talk to
#   cfn-lint      — validates template.yaml
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SNAPNEST_TOOLS_DIR:-$root/.tools}/venv"

CARGO_LAMBDA_VERSION="1.9.2"
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
wanted=("cargo-lambda==$CARGO_LAMBDA_VERSION" "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION")
if ! "$venv/bin/python" -m pip show cargo-lambda moto cfn-lint >/dev/null 2>&1 \
    || ! "$venv/bin/python" - "${wanted[@]}" <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    name = name.split("[")[0]
    if version(name) != want:
        sys.exit(1)
PY
then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}"
fi
echo "tools ready in $venv/bin: cargo-lambda $CARGO_LAMBDA_VERSION, moto $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION" >&2
