#!/usr/bin/env bash
# Installs Debian's Chromium for the HTML report's browser test, when it is missing and we may.
# Never fails the build: without a browser the test skips and says why.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no chromium and no root apt-get; the browser test will be skipped" >&2
  exit 0
fi
echo "install_browser: installing Debian's chromium (once)" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-freefont-ttf) >/tmp/vlguard-apt.log 2>&1 \
  || echo "install_browser: apt-get failed (see /tmp/vlguard-apt.log); the browser test will be skipped" >&2
exit 0
