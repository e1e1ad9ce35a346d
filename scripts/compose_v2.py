#!/usr/bin/env python3
"""Put Docker Compose v2 in a project-local directory, from Debian's package archive.

    scripts/compose_v2.py .tools/docker-compose

For machines without the `docker compose` plugin. Downloads Debian trixie's
`docker-compose` package (pinned version, checked against the SHA-256 that trixie's signed
package index lists for it), and unpacks only the plugin binary,
/usr/libexec/docker/cli-plugins/docker-compose, to the path given. Nothing is installed
system-wide. The binary is a Docker CLI plugin that also runs on its own
(`.tools/docker-compose up --wait`); it needs only libc, so it runs on bookworm too.

Standard library only (a .deb is an `ar` archive holding data.tar.xz): no dpkg needed.
DEBIAN_MIRROR overrides the archive (default http://deb.debian.org/debian; plain HTTP is
fine, the checksum is pinned). Proxies come from the usual *_proxy variables.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import tempfile
import urllib.request

VERSION = "2.26.1-4"
POOL_PATH = f"pool/main/d/docker-compose/docker-compose_{VERSION}_amd64.deb"
# From trixie's main/binary-amd64/Packages (InRelease-signed), entry docker-compose 2.26.1-4.
DEB_SHA256 = "47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"
MEMBER = "usr/libexec/docker/cli-plugins/docker-compose"


def ar_members(data: bytes):
    """(name, bytes) of each member of a System V / GNU `ar` archive."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        offset += 60
        yield name, data[offset:offset + size]
        offset += size + (size & 1)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    target = argv[1]
    if os.uname().machine not in ("x86_64", "amd64"):
        print(f"compose_v2: only the amd64 package is pinned; this is {os.uname().machine}. "
              "Install the docker-compose-plugin package instead.", file=sys.stderr)
        return 1
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")
    url = f"{mirror}/{POOL_PATH}"
    print(f"compose_v2: no `docker compose` here: fetching Debian's docker-compose {VERSION} "
          f"into {target} (project-local)", file=sys.stderr)
    deb = fetch(url)
    digest = hashlib.sha256(deb).hexdigest()
    if digest != DEB_SHA256:
        print(f"compose_v2: {url}: SHA-256 {digest}, expected {DEB_SHA256}: refusing it", file=sys.stderr)
        return 1
    for name, payload in ar_members(deb):
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
                member = tar.getmember("./" + MEMBER)
                source = tar.extractfile(member)
                assert source is not None
                binary = source.read()
            break
    else:
        print(f"compose_v2: no data.tar in {url}", file=sys.stderr)
        return 1
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as out:
        out.write(binary)
    os.chmod(out.name, 0o755)
    os.replace(out.name, target)
    print(f"compose_v2: {target} ready (Docker Compose {VERSION})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
