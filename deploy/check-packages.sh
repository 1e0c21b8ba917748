#!/usr/bin/env bash
# Builds the packages (deploy/package.sh) and checks them as CI does: the .deb with lintian, installed with
# dpkg, `kobo-exporter --version` and `systemd-analyze verify` on the installed unit, then purged; the
# .rpm's files, configuration files and scripts listed with rpm. Installs what it needs when missing
# (cargo-deb and cargo-generate-rpm with cargo, lintian and rpm from Debian's packages). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool missing: cargo install --locked $tool"
    cargo install --locked --quiet "$tool"
  fi
done
missing=()
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
      >/tmp/ci-packages-apt.log 2>&1; then
    tail -n 20 /tmp/ci-packages-apt.log >&2
    echo "cannot install ${missing[*]} (log above)" >&2
    exit 1
  fi
fi

bash deploy/package.sh
deb=$(ls target/debian/kobo-exporter_*.deb)
rpm_file=$(ls target/generate-rpm/kobo-exporter-*.rpm)

echo "--- lintian $deb"
# Kept warnings, each with why:
# - no-manual-page: the reference is --help and the README; no man page is written.
# - initial-upload-closes-no-bugs: no Debian bug tracks this package (it is not in the archive).
lintian --fail-on error,warning --suppress-tags no-manual-page,initial-upload-closes-no-bugs "$deb"

echo "--- dpkg install, run, verify, purge"
purge() { dpkg --purge kobo-exporter >/dev/null 2>&1 || true; }
trap purge EXIT
dpkg -i "$deb"
version=$(/usr/bin/kobo-exporter --version)
want="kobo-exporter $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)"
[ "$version" = "$want" ] || { echo "installed binary says '$version', not '$want'" >&2; exit 1; }
echo "$version"
dpkg-query -W -f='${Conffiles}\n' kobo-exporter | grep -q '/etc/kobo-exporter/Rocket.toml' \
  || { echo "/etc/kobo-exporter/Rocket.toml is not a conffile" >&2; exit 1; }
unit=/lib/systemd/system/kobo-exporter.service
grep -q '^ExecStart=/usr/bin/kobo-exporter ' "$unit"
verify=$(systemd-analyze verify "$unit" 2>&1 || true)
if echo "$verify" | grep kobo-exporter; then
  echo "systemd-analyze verify complains about the installed unit (above)" >&2
  exit 1
fi
echo "systemd-analyze verify $unit: clean"
dpkg --purge kobo-exporter
for path in /usr/bin/kobo-exporter "$unit" /etc/kobo-exporter/Rocket.toml; do
  [ ! -e "$path" ] || { echo "$path left after purge" >&2; exit 1; }
done
trap - EXIT
echo "installed, verified and purged"

echo "--- rpm $rpm_file"
rpm -qip "$rpm_file" | grep -E '^(Name|Version|Release|License|Summary) '
rpm -qlp "$rpm_file"
echo "configuration files:"
rpm -qcp "$rpm_file" | tee /tmp/rpm-config.txt
grep -qx /etc/kobo-exporter/Rocket.toml /tmp/rpm-config.txt
# %config(noreplace): an edited Rocket.toml survives an upgrade (flags c and n).
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" \
  | grep -Eq '^c[a-z]*n[a-z]* /etc/kobo-exporter/Rocket.toml$' \
  || { echo "/etc/kobo-exporter/Rocket.toml is not %config(noreplace)" >&2; exit 1; }
echo "scripts:"
rpm -qp --scripts "$rpm_file"
rpm -qlp "$rpm_file" | grep -qx /usr/lib/systemd/system/kobo-exporter.service
echo "packages: checked"
