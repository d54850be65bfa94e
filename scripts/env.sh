# Sourced by quickstart.sh and test.sh: create .venv (Python ≥ 3.11) once, then install the
# pinned, tested set into it. Safe to rerun: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "specnet needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 2; }
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -qq --disable-pip-version-check -c constraints.txt -e ".[$1]"
# tf_keras (Keras 2) writes the legacy files the import tests read; with --no-deps, as its own
# requirement is `tensorflow`, which would pull a second TensorFlow beside tensorflow-cpu
if [[ ",$1," == *",dev,"* ]]; then
    .venv/bin/python -m pip install -qq --disable-pip-version-check --no-deps -c constraints.txt tf-keras
fi
