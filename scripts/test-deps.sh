#!/bin/sh
# The system tools the tests use, and the Debian packages that bring them.
# Called by `npm test` before the tests run. Installs what is missing when it
# can (root and apt-get present); otherwise says which tests will be skipped
# and how to install their tools. Never fails the test run by itself.
# `__test__/tools.ts` holds the same table for the skip messages.
set -u

# tool:package
TABLE="
sshd:openssh-server
ssh-keygen:openssh-client
b3sum:b3sum
sha256sum:coreutils
rsync:rsync
mkfs.exfat:exfatprogs
mount.exfat-fuse:exfat-fuse
losetup:mount
setpriv:util-linux
script:bsdutils
setfacl:acl
getfacl:acl
setfattr:attr
getfattr:attr
python3:python3
strace:strace
pgrep:procps
chromium:chromium
systemd-analyze:systemd
"

have() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing_pkgs=""
missing_tools=""
for row in $TABLE; do
  tool=${row%%:*}
  pkg=${row#*:}
  if ! have "$tool"; then
    missing_tools="$missing_tools $tool"
    case " $missing_pkgs " in *" $pkg "*) ;; *) missing_pkgs="$missing_pkgs $pkg" ;; esac
  fi
done

[ -z "$missing_pkgs" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing$missing_pkgs (for$missing_tools)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null 2>&1; then
    exit 0
  fi
  echo "test-deps: apt-get could not install$missing_pkgs" >&2
fi

echo "test-deps: missing tools:$missing_tools" >&2
echo "test-deps: the tests that need them will be skipped (each says why)." >&2
echo "test-deps: to run them, install:$missing_pkgs (Debian/Ubuntu: sudo apt-get install$missing_pkgs)" >&2
exit 0
