#!/usr/bin/env bash
# Checks the README's quick start on a fresh machine: builds a minimal Debian 12 (bookworm)
# root with debootstrap (minbase + python3, nothing else), copies this work tree into it and
# runs the README's two commands there in a chroot:
#
#     bash scripts/demo.sh
#     bash scripts/test.sh [PYTEST_ARGS...]
#
# Usage (as root, on a Debian or Ubuntu host with network access to a Debian mirror):
#
#     bash scripts/check-fresh-debian.sh                 # both commands, whole suite
#     bash scripts/check-fresh-debian.sh --demo-only     # only the demo
#     bash scripts/check-fresh-debian.sh -- tests/unit   # test.sh with these pytest args
#     bash scripts/check-fresh-debian.sh --keep          # keep the root for a look afterwards
#
# The mirror is the first Debian source apt is configured with on this host (or
# $DEBIAN_MIRROR).  /proc, /sys and /dev are mounted in the root and unmounted on
# exit, whatever happens; the root is removed unless --keep.  Services are not started by
# package installs inside the chroot (a policy-rc.d that says no, as in any chroot build):
# the tests start the ones they need themselves.  CI does not run this (it needs root,
# debootstrap and several hundred MB of packages); run it by hand after changing set-up.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

demo_only=0
keep=0
root=""
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --demo-only) demo_only=1 ;;
    --keep) keep=1 ;;
    --root) root="$2"; shift ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-fresh-debian: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "check-fresh-debian: needs root (debootstrap, chroot, mounts)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null; then
  echo "check-fresh-debian: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends debootstrap; }
fi

mirror_of_host() {
  # deb822 sources first (Debian 12 default), then the one-line format.
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk 'tolower($1)=="uris:" && $2 ~ /\/debian\/?$/ {print $2; exit}' \
          /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^https?:.*\/debian\/?$/) {print $i; exit}}' \
          /etc/apt/sources.list)
  fi
  echo "$uri"
}
mirror="${DEBIAN_MIRROR:-$(mirror_of_host)}"
if [ -z "$mirror" ]; then
  echo "check-fresh-debian: no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2
  exit 2
fi

if [ -z "$root" ]; then
  root="$(mktemp -d /var/tmp/cas-fresh-debian.XXXXXX)"
else
  mkdir -p "$root"
fi
# mktemp makes it 0700: as the root's "/", that would lock out every user but root
# (apt's _apt sandbox, PostgreSQL's initdb as postgres).
chmod 0755 "$root"
mounted=()
cleanup() {
  local rc=$?
  # Unmount in reverse order; a process left behind keeps a mount busy, so fall back to a
  # lazy unmount rather than leave the host's /dev bound under a directory we then delete.
  for ((i=${#mounted[@]}-1; i>=0; i--)); do
    umount -R "${mounted[i]}" 2>/dev/null || umount -R -l "${mounted[i]}" || true
  done
  if [ "$keep" -eq 0 ]; then
    if grep -q " $root/" /proc/mounts; then
      echo "check-fresh-debian: $root still has mounts; not removing it" >&2
    else
      rm -rf --one-file-system "$root"
    fi
  else
    echo "check-fresh-debian: root kept in $root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== debootstrap bookworm (minbase + python3) into $root from $mirror"
debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" \
  > "$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
rm -f "$root.debootstrap.log"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# A host behind a TLS-inspecting proxy trusts extra local CAs; without them pip in the root
# cannot reach the package index.  Carry them over (only then), as the host's bundle.
extra_env=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null \
   && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl-host-ca-bundle.crt"
  extra_env=(PIP_CERT=/etc/ssl-host-ca-bundle.crt)
  echo "== the host trusts local CAs: pip in the root uses the host's CA bundle"
fi

echo "== copying the work tree (tracked and new files, no .venv) into /root/cas-sim"
mkdir -p "$root/root/cas-sim"
(cd "$here" && git ls-files -z --cached --others --exclude-standard \
   | tar --null -T - --ignore-failed-read -cf -) | tar -C "$root/root/cas-sim" -xf -

# /dev is bound recursively and made a slave, so nothing mounted under it in the root can
# propagate back to the host's /dev (a shared bind would carry it there).
mkdir -p "$root/proc" "$root/sys" "$root/dev"
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
mount -t sysfs sysfs "$root/sys"; mounted+=("$root/sys")
mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; mounted+=("$root/dev")

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "${extra_env[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/cas-sim && $1"
}

echo "== in the root: python3 is $(in_root 'python3 --version'); no venv module, no gcc:"
in_root 'python3 -c "import ensurepip" 2>/dev/null && echo "  ensurepip present" || echo "  ensurepip missing"; command -v gcc || echo "  gcc missing"'

echo "== bash scripts/demo.sh"
in_root 'bash scripts/demo.sh'
if [ "$demo_only" -eq 0 ]; then
  echo "== bash scripts/test.sh ${pytest_args[*]}"
  in_root "bash scripts/test.sh ${pytest_args[*]@Q}"
fi
echo "check-fresh-debian: the README's commands passed on a fresh Debian 12 root"
