#!/usr/bin/env bash
# Debian libraries for offscreen rendering with VTK/PyVista (OSMesa, with EGL where present).
# Installs only what is missing; needs root or sudo the first time.
set -euo pipefail
needed=(libosmesa6 libgl1 libegl1 libxrender1)
missing=()
for p in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Offscreen rendering needs ${missing[*]}, and apt-get is not available: install them by hand." >&2
  exit 1
fi
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing Debian packages for offscreen rendering: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
