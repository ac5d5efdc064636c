#!/usr/bin/env bash
# make setup: install what dbflywheel needs on Debian 12, skipping whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
PG_SHARE=/usr/share/postgresql/$PG_MAJOR/extension
VENV=${VENV:-.venv}
# Python packages that PL/Python functions import; Debian's python3 finds them through
# the folder fixed into the install (dbflywheel install --python-path, DBFLYWHEEL_PL_PYTHON_DIR;
# see src/dbflywheel/build.py), never through the virtual environment.
PL_PYTHON_DIR=${DBFLYWHEEL_PL_PYTHON_DIR:-/usr/local/lib/dbflywheel/python3.11}
PL_REQUIREMENTS=plpython/requirements.txt

say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-contrib
  postgresql-plpython3-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
  python3 python3-venv python3-numpy build-essential dpkg-dev chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "apt packages present"
fi

# Debian 12 has no pgvector package: build it from Debian's own source package (trixie).
if [ ! -f "$PG_SHARE/vector.control" ]; then
  say "building pgvector from Debian's source package"
  src_list=/etc/apt/sources.list.d/dbflywheel-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    as_root tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    as_root apt-get update -qq
  fi
  build_dir=$(mktemp -d)
  (cd "$build_dir" && apt-get source -qq pgvector >/dev/null 2>&1 \
     && cd pgvector-*/ && make -s PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config >/dev/null 2>&1 \
     && as_root make -s install PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config >/dev/null)
  rm -rf "$build_dir"
  [ -f "$PG_SHARE/vector.control" ] || { say "pgvector build failed"; exit 1; }
else
  say "pgvector present"
fi

# The virtual environment, with the package in editable mode and its dev extras.
stamp="$VENV/.dbflywheel-installed"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing dbflywheel into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e '.[dev]'
  touch "$stamp"
else
  say "virtual environment up to date"
fi

# The real sentence-embedding model, where a CPU wheel of torch lies on this machine.
VENV="$VENV" bash scripts/models.sh auto

# What PL/Python imports beyond the standard library and numpy, for Debian's python3.11.
pl_stamp="$PL_PYTHON_DIR/.requirements"
if [ ! -f "$pl_stamp" ] || ! cmp -s "$PL_REQUIREMENTS" "$pl_stamp"; then
  say "installing PL/Python packages into $PL_PYTHON_DIR"
  as_root mkdir -p "$PL_PYTHON_DIR"
  # --no-deps: the file pins every package; numpy is Debian's (python3-numpy), never a wheel.
  as_root "$VENV/bin/pip" install -q --no-compile --upgrade --no-deps --target "$PL_PYTHON_DIR" \
    --python-version 3.11 --only-binary=:all: -r "$PL_REQUIREMENTS"
  as_root cp "$PL_REQUIREMENTS" "$pl_stamp"
  as_root chmod -R a+rX "$PL_PYTHON_DIR"
else
  say "PL/Python packages present"
fi
say "done"
