#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) from the release binary, with the metadata
# of Cargo.toml: /usr/bin/kobo-exporter, the systemd unit, /etc/kobo-exporter/Rocket.toml as a
# configuration file the package manager keeps on upgrade, the README and the licence.
#   deploy/package.sh          -> target/debian/kobo-exporter_<version>-1_<arch>.deb, target/generate-rpm/*.rpm
# Needs: cargo install --locked cargo-deb cargo-generate-rpm
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin kobo-exporter
# The unit as packaged: the binary is the package's, in /usr/bin (deploy/ has /usr/local/bin, for an
# install from source).
mkdir -p target/package
sed 's|/usr/local/bin/kobo-exporter|/usr/bin/kobo-exporter|g' deploy/kobo-exporter.service \
  > target/package/kobo-exporter.service
if grep -q /usr/local/ target/package/kobo-exporter.service; then
  echo "package.sh: the packaged unit still names /usr/local" >&2
  exit 1
fi
cargo deb --no-build --output target/debian/
mkdir -p target/generate-rpm
cargo generate-rpm --output target/generate-rpm
ls -l target/debian/*.deb target/generate-rpm/*.rpm
