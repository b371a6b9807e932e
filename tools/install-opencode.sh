#!/usr/bin/env bash
# Installs one pinned OpenCode server into .opencode/VERSION/ from npm.
# opencode-ai's launcher only picks the platform package and runs its binary; installing the
# platform package alone (opencode-<os>-<arch>) brings the same binary without the others.
set -euo pipefail
version="$1"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "install-opencode: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
os=$(uname -s | tr '[:upper:]' '[:lower:]')
pkg="opencode-${os}-${arch}"
dir=".opencode/${version}"
mkdir -p "$dir"
printf '{"private": true}\n' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact "${pkg}@${version}"
mkdir -p "$dir/bin"
ln -sf "../node_modules/${pkg}/bin/opencode" "$dir/bin/opencode"
"$dir/bin/opencode" --version >/dev/null
echo "    OpenCode ${version}: $dir/bin/opencode"
