#!/usr/bin/env bash
# Install what availlab needs on a Debian 12 machine; quick and silent when all is there.
# Debian packages come from the host's own apt configuration; Python packages from pip's
# configured index. Idempotent: re-running only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  qemu-system-x86 qemu-utils                       # hypervisor (TCG/KVM) and qcow2 tooling
  libvirt-daemon-system libvirt-clients            # libvirtd, one per lab host
  libvirt-dev pkg-config gcc                       # to build libvirt-python
  mmdebstrap e2fsprogs                             # guest image build (mkfs.ext4 -d)
  unixodbc unixodbc-dev                            # ODBC driver manager (each database's driver: below)
  python3-libnbd                                   # NBD client: reads pull-mode backups (not on PyPI)
  iproute2 util-linux                              # ip netns exec, unshare, mount
  python3-venv python3-dev                         # the project's virtualenv
)
# Only the test suite needs these (`make test` runs `lab/setup.sh --test`); `make demo` does not.
APT_TEST_PACKAGES=(
  libxml2-utils                                    # xmllint, used by virt-xml-validate in tests
  chromium                                         # headless check of the HTML report
  openssh-server openssh-client                    # sshd inside lab hosts: the qemu+ssh cluster test
)
if [ "${1:-}" = "--test" ]; then
  APT_PACKAGES+=("${APT_TEST_PACKAGES[@]}")
fi
PYTHON="${PYTHON:-python3}"
VENV=.venv

installed_now=()  # what this run installed: a daemon it brought is switched off below
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run 'make setup' as root" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -q
  # Daemons these packages would start (libvirtd, sshd) stay stopped: the lab runs its own copies
  # inside its namespaces, and a new listening service on this machine is not ours to add.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# availlab setup: no service starts while it installs packages\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  installed_now+=("${missing[@]}")
}
install_missing "${APT_PACKAGES[@]}"
# Each database's ODBC driver and client tools (its dump tool), as its dialect declares them
# (lib/availlab/dialects.py: host_packages); read with Debian's Python, which the list above ensures.
db_packages="$(PYTHONPATH=lib /usr/bin/python3 -c 'from availlab.dialects import host_packages; print(*host_packages())')"
# shellcheck disable=SC2086  # one word per package
install_missing $db_packages

# The lab's libvirtd run in namespaces we create. A system libvirtd that this setup installed just
# now (Debian starts it, and its default network puts a bridge and address in the root namespace)
# is switched off again, and said so; one that was there before is the machine owner's: left alone.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  if [[ " ${installed_now[*]} " == *" libvirt-daemon-system "* ]]; then
    echo "setup: switching off the system libvirtd this setup just installed (the lab runs its own;" \
         "'systemctl enable --now libvirtd' brings it back)"
    systemctl disable --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket \
      virtqemud.service virtqemud.socket >/dev/null 2>&1 || true
  fi
  if [[ " ${installed_now[*]} " == *" openssh-server "* ]]; then
    echo "setup: openssh-server was installed for the lab's hosts only; its system service stays off" \
         "('systemctl enable --now ssh' turns it on)"
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
fi

stamp="$VENV/.availlab-setup"
want="$(cat pyproject.toml lab/setup.sh | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $VENV (pip install -e .[dev,jupyter])"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[dev,jupyter]'
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name availlab \
    --display-name "Python (availlab)" >/dev/null
  echo "$want" > "$stamp"
fi
# libnbd's Python binding is a Debian package only: link its two files into the virtualenv (the
# venv does not see the system's site-packages, and must not see all of them).
if ! "$VENV/bin/python" -c 'import nbd' 2>/dev/null; then
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
  shopt -s nullglob
  for f in /usr/lib/python3/dist-packages/nbd.py /usr/lib/python3/dist-packages/libnbdmod.cpython-*.so; do
    ln -sf "$f" "$site/"
  done
  shopt -u nullglob
  # not fatal: only pull-mode backups need it, and they say so (`availlab backup --mode push` works)
  "$VENV/bin/python" -c 'import nbd' 2>/dev/null || \
    echo "setup: WARNING: libnbd's binding (built for Debian's $(/usr/bin/python3 --version)) does not" \
         "load in $("$VENV/bin/python" --version): pull-mode backups will be refused; rebuild the venv" \
         "with Debian's Python: rm -rf $VENV && PYTHON=/usr/bin/python3 make setup" >&2
fi
echo "setup: ok ($("$VENV/bin/python" --version), libvirt $("$VENV/bin/python" -c 'import libvirt; v=libvirt.getVersion(); print(f"{v//1000000}.{v//1000%1000}.{v%1000}")'))"
