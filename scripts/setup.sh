#!/usr/bin/env bash
# Sets up a fresh machine for cas-sim: system packages (apt) and a Python venv (.venv).
# Idempotent: a second run only checks.  Used by scripts/demo.sh and scripts/test.sh.
# A minimal Debian 12 has python3 and nothing else: the venv module, a C compiler and the
# Python headers (pyscard is built from source against libpcsclite) come from apt first.
# scripts/check-fresh-debian.sh proves that on a debootstrapped Debian 12 root.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

APT_PACKAGES=(
  python3-venv gcc libc6-dev python3-dev
  pcscd vsmartcard-vpcd pcsc-tools opensc libpcsclite-dev swig
  libdvbcsa1 libdvbcsa-dev
  postgresql
  ffmpeg
  chromium
)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
