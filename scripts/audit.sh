#!/usr/bin/env bash
# Audit the installed set (.venv) for known vulnerabilities. Needs network: pip-audit asks the
# PyPI/OSV advisory service, which no offline database here can stand in for. pip-audit runs
# from its own throwaway environment so it never changes the project's.
# --strict: a package the service cannot answer for is a failure, not a silent "no known
# vulnerabilities" (offline, every package is unanswerable).
#   bash scripts/audit.sh            (after scripts/env.sh or scripts/test.sh made .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
"${PYTHON:-$(command -v python3.11 || command -v python3)}" -m venv "$tool"
"$tool/bin/pip" install -qq pip-audit
"$tool/bin/pip-audit" --path "$site" --skip-editable --strict --progress-spinner off "$@"
