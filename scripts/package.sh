#!/usr/bin/env bash
# Builds every Lambda function of the workspace for AWS Lambda (provided.al2023, arm64)
# as a deployment zip, and checks each zip against the size budget.
#
#   ./scripts/package.sh            # all packages in functions/
#   ./scripts/package.sh restore    # only the named ones
#
# cargo-lambda (pinned in scripts/install-tools.sh, into .tools/venv) cross-compiles with
# zig (the `ziglang` wheel it depends on, in the same venv) and adds the Rust target
# aarch64-unknown-linux-gnu through rustup itself. The release profile in Cargo.toml
# (opt-level "s", LTO, one codegen unit, strip, panic=abort) keeps the binaries small;
# a cold build takes about 18 minutes on 2 cores.
#
# Output: target/lambda/<package>/bootstrap.zip ($CARGO_TARGET_DIR/lambda/... when that is
# set). `sam build` runs the same cargo-lambda for the rust-cargolambda build method of
# template.yaml; this script is the check that every function stays within its budget.
#
# Environment: SNAPNEST_ZIP_BUDGET_MB (default 8) — the largest zip allowed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

budget_mb="${SNAPNEST_ZIP_BUDGET_MB:-8}"

bash scripts/install-tools.sh
export PATH="${SNAPNEST_TOOLS_DIR:-$root/.tools}/venv/bin:$PATH"

# The function packages: one per folder of functions/, named by its Cargo.toml.
if [ "$#" -gt 0 ]; then
    packages=("$@")
else
    packages=()
    for manifest in functions/*/Cargo.toml; do
        name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
        packages+=("$name")
    done
fi
if [ "${#packages[@]}" -eq 0 ]; then
    echo "package.sh: no function packages found in functions/" >&2
    exit 1
fi

args=()
for package in "${packages[@]}"; do
    args+=(-p "$package")
done

echo "building ${packages[*]} (release, arm64, zip)" >&2
cargo lambda build --release --arm64 --output-format zip "${args[@]}"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
budget_bytes=$((budget_mb * 1024 * 1024))
status=0
printf '%-20s %10s %10s\n' function "zip (MB)" "budget"
for package in "${packages[@]}"; do
    zip="$target_dir/lambda/$package/bootstrap.zip"
    if [ ! -f "$zip" ]; then
        echo "package.sh: $zip was not built" >&2
        status=1
        continue
    fi
    bytes="$(wc -c <"$zip")"
    verdict="ok"
    if [ "$bytes" -gt "$budget_bytes" ]; then
        verdict="OVER"
        status=1
    fi
    printf '%-20s %10s %7s MB  %s\n' "$package" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" \
        "$budget_mb" "$verdict"
done
if [ "$status" -ne 0 ]; then
    echo "package.sh: a function zip is missing or over the ${budget_mb} MB budget" >&2
fi
exit "$status"
