#!/usr/bin/env bash
# deps.sh: makes sure the Debian packages sft builds with are present.
# As root it installs the missing ones with apt-get; otherwise it names them.
set -eu
packages="gcc make pkg-config libjansson-dev libpcre2-dev libopenblas-dev libyaml-dev zlib1g-dev libutf8proc-dev libxxhash-dev libcairo2-dev"
[ "${1:-}" = "--test" ] && packages="$packages valgrind libxml2-utils"
[ "${1:-}" = "--fuzz" ] && packages="$packages clang libclang-rt-14-dev"
[ "${1:-}" = "--bench" ] && packages="$packages python3-torch"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
else
  echo "missing Debian packages:$missing" >&2
  echo "install them with: sudo apt-get install$missing" >&2
  exit 1
fi
