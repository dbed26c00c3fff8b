#!/usr/bin/env bash
# Installs the Debian packages some tests use, when they are missing and we may:
#   chromium            the HTML report's browser test
#   fonts-freefont-ttf  FreeMonoBold, the font of FigStep's typographic images
# Never fails the build: without them the tests that need them skip and say why.
set -u
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/freefont/FreeMonoBold.ttf ] || missing+=(fonts-freefont-ttf)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_packages: missing ${missing[*]} and no root apt-get; tests that need them will be skipped" >&2
  exit 0
fi
echo "install_test_packages: installing Debian packages: ${missing[*]}" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/tmp/vlguard-apt.log 2>&1 \
  || echo "install_test_packages: apt-get failed (see /tmp/vlguard-apt.log); tests that need these will be skipped" >&2
exit 0
