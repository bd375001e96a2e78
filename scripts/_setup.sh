# Shared by scripts/serve and scripts/test: make .venv and install hybridvideo into it.
# Usage: . scripts/_setup.sh EXTRAS   (EXTRAS is "" or "test")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY' || { echo "hybridvideo needs Python >= 3.11 (found $($PYTHON --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing python3-venv (Debian splits venv out of python3)" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "could not create a virtualenv: install your distribution's python3-venv" >&2; exit 1
    fi
  fi
fi
EXTRAS="${1:-}"
SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
STAMP=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${EXTRAS:-base}"
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$SPEC"
  touch "$STAMP"
fi
# The admin pages' JavaScript: web/ (tus-js-client, bundled by esbuild) builds
# src/hybridvideo/api/static/admin/{upload,migrations}.js and static/player/player.js (the
# reference player, with hls.js). Optional: without Node.js the
# server and the API work, only /admin/upload and /admin/migrations answer 503 naming the
# fix. Stamps (like the pip one above) make a repeated run cost nothing: `npm ci` reruns
# only when package-lock.json changed, the build only when web/'s sources did or a bundle
# is missing.
hv_web_warn() {
  echo "warning: $1: the admin pages (/admin/upload, /admin/migrations) will be unavailable;" \
       "the server and its API work without it." >&2
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  hv_web_warn "Node.js (node and npm, version 20 or newer) is not installed"
elif ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  hv_web_warn "Node.js $(node --version) is too old (20 or newer is needed)"
else
  NPM_STAMP="web/node_modules/.installed-$(sha256sum web/package-lock.json | cut -c1-16)"
  if [ ! -f "$NPM_STAMP" ]; then
    echo "installing web/'s npm packages (npm ci)" >&2
    if (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      touch "$NPM_STAMP"
    else
      hv_web_warn "npm ci failed in web/"
    fi
  fi
  # One bundle per web/src/*.js entry (the entries of `npm run build` in web/package.json).
  BUNDLES_MISSING=0
  for BUNDLE in admin/upload.js admin/migrations.js player/player.js; do
    [ -f "src/hybridvideo/api/static/$BUNDLE" ] || BUNDLES_MISSING=1
  done
  # Entries are web/src/*.js; their helpers live in sub-folders (web/src/player/), so the
  # stamp covers every source file under web/src.
  BUILD_STAMP="web/node_modules/.built-$(cat web/package.json web/package-lock.json $(find web/src -name '*.js' | LC_ALL=C sort) | sha256sum | cut -c1-16)"
  if [ -f "$NPM_STAMP" ] && { [ ! -f "$BUILD_STAMP" ] || [ "$BUNDLES_MISSING" = 1 ]; }; then
    if (cd web && npm run --silent build >/dev/null 2>&1); then
      rm -f web/node_modules/.built-*
      touch "$BUILD_STAMP"
    else
      hv_web_warn "\`npm run build\` failed in web/ (run it there to see why)"
    fi
  fi
fi
