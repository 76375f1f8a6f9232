#!/usr/bin/env bash
# Fetches the default country database from the npm registry into DEST (default
# .prisme-data/geoip), checked against a pinned sha256. A second run is a no-op.
# Data: ip-location-db geo-whois-asn-country (CC0-1.0; RIR data © NRO, CC BY 4.0).
set -euo pipefail
pkg="@ip-location-db/geo-whois-asn-country-mmdb"
version="2.3.2026061719"
file="geo-whois-asn-country.mmdb"
sha256="c5f7c0e9bd6a6ccb5a2e9634764544a0d08bd0bd8788b8aedfac87bea184c652"
dest="${1:-.prisme-data/geoip}"
mkdir -p "$dest"
if [ -f "$dest/$file" ] && echo "$sha256  $dest/$file" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" "$pkg@$version" >/dev/null
tar -xzf "$tmp"/*.tgz -C "$tmp" "package/$file"
echo "$sha256  $tmp/package/$file" | sha256sum -c --quiet -
mv "$tmp/package/$file" "$dest/$file"
echo "fetched $dest/$file"
