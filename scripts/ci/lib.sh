# Shared by the CI setup scripts: sourced, not run.

# Installs Debian packages that are missing, running `apt-get update` at most once per boot.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ ! -e /run/rodent-ci-apt-updated ]; then
    apt-get update -qq
    touch /run/rodent-ci-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

have() { command -v "$1" >/dev/null 2>&1; }

log() { printf '[ci] %s\n' "$*" >&2; }
