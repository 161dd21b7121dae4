#!/usr/bin/env bash
# Install what the tests need (Python extras, and Xvfb + Qt's X libraries for
# the napari viewer tests when they are missing), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test,napari]"
need_apt=()
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
for lib in libgl1-mesa-dri libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libx11-xcb1 libxcb-icccm4 libxcb-image0 \
           libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 \
           libxkbcommon-x11-0; do
  dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing for the viewer tests: ${need_apt[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
exec "$PY" -m pytest -n 2 "$@"
