#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the tests that run pixelbot on an external database.
# Idempotent and quiet; without root or apt it says so and leaves those tests to skip.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get > /dev/null; then
    echo "note: PostgreSQL server not installed (needs root and apt-get); its tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq > /dev/null
# policy-rc.d keeps the package from starting a system-wide server: the tests start their own
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends postgresql > /dev/null
