#!/usr/bin/env bash
# Installs every tool the tests and the packaging need into a project-local Python
# environment (.tools/venv), pinned, from PyPI. Idempotent: a second run only checks.
#   cargo-lambda  — `cargo lambda watch/invoke/build` for the end-to-end tests and packaging
#   moto[server]  — the AWS-compatible emulator the DynamoDB/EC2/RDS adapter tests talk to
#   cfn-lint      — validates template.yaml
# and, from the npm registry into tests/iam/node_modules, the IAM policy evaluator the IAM
# test drives (@cloud-copilot/iam-simulate, pinned in tests/iam/package.json and
# package-lock.json; needs Node 20+ and npm); for the web console's browser test
# (tests/console), Debian's chromium package (pinned; apt-get, as root or through sudo) and
# playwright-core (pinned in tests/console/package-lock.json) into tests/console/node_modules.
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
# `npm ci` installs exactly the lock file; it runs again only when node_modules is missing
# or was installed from another lock file.
npm_ci_once() {
    local dir="$1" stamp="$1/node_modules/.snapnest-package-lock.json"
    if ! cmp -s "$dir/package-lock.json" "$stamp"; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        cp "$dir/package-lock.json" "$stamp"
    fi
}
iam="$root/tests/iam"
npm_ci_once "$iam"
IAM_SIMULATE_VERSION="$(node -p "require('$iam/node_modules/@cloud-copilot/iam-simulate/package.json').version")"

# Chromium for the console test: Debian's own package at this version (it is what the test
# drives through playwright-core's executablePath; playwright's browser downloads are not
# used). Installed only when /usr/bin/chromium is missing or another version is installed.
CHROMIUM_VERSION="156.0.8078.114-1~deb12u1"
if [ ! -x /usr/bin/chromium ] \
    || [ "$(dpkg-query -W -f='${Version}' chromium 2>/dev/null)" != "$CHROMIUM_VERSION" ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    install_chromium() {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            --allow-downgrades "chromium=$CHROMIUM_VERSION" "chromium-common=$CHROMIUM_VERSION" >/dev/null
    }
    # The package lists may not know this version yet: update them once and try again.
    install_chromium || { $sudo apt-get update -qq && install_chromium; }
fi
console="$root/tests/console"
npm_ci_once "$console"
PLAYWRIGHT_CORE_VERSION="$(node -p "require('$console/node_modules/playwright-core/package.json').version")"
echo "tools ready in $venv/bin: cargo-lambda $CARGO_LAMBDA_VERSION, moto $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION; iam-simulate $IAM_SIMULATE_VERSION in tests/iam; chromium $CHROMIUM_VERSION; playwright-core $PLAYWRIGHT_CORE_VERSION in tests/console" >&2
