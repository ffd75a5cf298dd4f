#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus's rule and config checker, used by tests/test_deploy_files.py) is on PATH.
# Installs the Debian package `prometheus` when apt-get is there and we are root, without starting its server
# (a policy-rc.d that denies every service start while the package installs); otherwise says what is missing.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "promtool is missing: installing the Debian package prometheus (its server is not started)"
    policy=/usr/sbin/policy-rc.d
    created=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created=1
    fi
    trap '[ -n "$created" ] && rm -f "$policy"' EXIT
    apt-get install -y --no-install-recommends prometheus >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
    command -v promtool >/dev/null 2>&1 && exit 0
fi
echo "promtool is missing: install Prometheus's promtool (Debian/Ubuntu: apt-get install prometheus;" \
    "or the release tarball from prometheus.io) and put it on PATH" >&2
exit 1
