#!/usr/bin/env bash
# A Debian bookworm base image made on this machine, with no image registry: debootstrap from
# Debian's package mirror, then `docker import`, which is how Debian's official image is made
# (debuerreotype). Slimmed as its -slim variant is (no documentation, manual pages or translations,
# no apt caches or lists), and, as there, packages installed in a build never start services.
#   docker/debian-base.sh [TAG]      # TAG defaults to cropper-base:bookworm
# Then build every image from it: BASE_IMAGE=TAG docker compose up -d --build (docs/deployment.md).
set -euo pipefail
tag=${1:-cropper-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fail() { echo "debian-base: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "debootstrap needs root"
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || fail "debootstrap is missing: apt-get install debootstrap"
command -v "${DOCKER:-docker}" >/dev/null || fail "docker is missing: apt-get install docker.io"

rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/cropper-base.XXXXXX")
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
/usr/sbin/debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || fail "debootstrap failed: $(tail -n 3 "$rootfs.log" | tr '\n' ' ')"

# Security and point-release updates too, as the official image has them.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# Packages installed in a build must not try to start their services (nginx's would).
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
# apt keeps no caches or translations in a layer; dpkg leaves documentation out (debian:*-slim's rules).
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
APT
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
force-unsafe-io
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
DPKG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/* \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/log/* "$rootfs"/tmp/*
: >"$rootfs/etc/machine-id"

tar --numeric-owner -C "$rootfs" -c . \
    | "${DOCKER:-docker}" import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm" - "$tag" >/dev/null
echo "debian-base: built $tag"
