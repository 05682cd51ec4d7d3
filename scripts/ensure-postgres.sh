#!/usr/bin/env bash
# Installs Debian's PostgreSQL server so the tests can run pixelbot on an external database
# (tests/postgres.py starts throwaway clusters with it; no system-wide server is ever started).
# Idempotent and quiet on success. Without root or apt-get it only says so, and those tests skip.
# No extension is installed: Pixeltable runs CREATE EXTENSION vector only on its embedded server,
# an external one needs pgvector only for embedding indexes, which pixelbot does not use.
set -euo pipefail

have_server() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ]; then
            return 0
        fi
    done
    return 1
}

if have_server; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get > /dev/null; then
    echo "ensure-postgres: no PostgreSQL server in /usr/lib/postgresql and no way to install one" \
        "(needs root and apt-get); the tests that need it will be skipped" >&2
    exit 0
fi

# One install at a time (two `make test` runs on a fresh machine): the second then finds the server.
exec 9> /var/lock/pixelbot-ensure-postgres.lock
flock 9
if have_server; then
    exit 0
fi

# The package would start a cluster on port 5432 (there is no systemd to stop it): policy-rc.d
# forbids that for the duration of the install, then the machine's own policy (if any) comes back.
policy=/usr/sbin/policy-rc.d
log=$(mktemp)
saved=""
if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
fi
restore() {
    if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
    rm -f "$log"
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -q -o DPkg::Lock::Timeout=300)
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends postgresql; } > "$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-postgres: installing Debian's postgresql package failed (output above)" >&2
    exit 1
fi
if ! have_server; then
    echo "ensure-postgres: postgresql installed but no server binaries in /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
