#!/bin/sh
# Installs the Debian packages named as arguments when missing (as root),
# otherwise prints the exact apt-get command and fails.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deeprec: installing Debian packages:$missing" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2 || {
    apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2; } || exit 1
else
  echo "deeprec: missing Debian packages. Run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
