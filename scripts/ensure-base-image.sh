#!/bin/sh
# Make sure the base image every Dockerfile starts FROM exists locally.
# Order: already present -> docker pull -> build the same tag with debootstrap.
# The local build exists for air-gapped machines that reach Debian's archive but
# no container registry; users with a registry never get past the pull.
set -eu

IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
echo "base image: pulling $IMAGE"
if timeout 300 docker pull "$IMAGE"; then
    exit 0
fi

echo "base image: pull failed; building $IMAGE locally (debootstrap $SUITE, minbase)"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "debootstrap needs root: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
    else
        echo "debootstrap is not installed and apt-get is not available: pull $IMAGE another way" >&2
        exit 1
    fi
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/base-rootfs.XXXXXX")"
trap '$SUDO rm -rf "$ROOTFS"' EXIT INT TERM
$SUDO debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"

# Shape it like the official slim image: deb822 sources with updates and
# security, no docs/man/locales installed by later apt runs, apt caches cleaned.
$SUDO rm -f "$ROOTFS/etc/apt/sources.list"
$SUDO sh -c "cat > '$ROOTFS/etc/apt/sources.list.d/debian.sources'" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
$SUDO sh -c "cat > '$ROOTFS/etc/dpkg/dpkg.cfg.d/docker'" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
$SUDO sh -c "cat > '$ROOTFS/etc/apt/apt.conf.d/docker-clean'" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
$SUDO sh -c "cd '$ROOTFS' && rm -rf var/lib/apt/lists/* var/cache/apt/* usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* tmp/* var/log/*.log"

$SUDO tar --numeric-owner -C "$ROOTFS" -c . | docker import --change 'CMD ["bash"]' - "$IMAGE"
echo "base image: built $IMAGE"
