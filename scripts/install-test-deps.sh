#!/bin/sh
# install-test-deps.sh installs the Debian packages that the test suite drives
# as real peers (tor, Debian's Snowflake 2.5.1 binaries, nginx, ...). It is
# idempotent and prints nothing when everything is already installed.
set -eu

packages="tor tor-geoipdb snowflake-client snowflake-proxy nginx-light iproute2 util-linux ca-certificates nftables chromium docker-compose prometheus systemd groff-base nodejs tshark"
# npm installs the npm-pinned test servers (internal/sqstest); some nodejs
# builds bundle it, Debian ships it separately.
command -v npm >/dev/null 2>&1 || packages="$packages npm"

missing=""
for p in $packages; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	"install ok installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-test-deps: missing Debian packages:$missing (run as root or install them)" >&2
	exit 1
fi

echo "install-test-deps: installing$missing"
# Packages such as tor start a system service from their postinst. The tests
# start their own instances, and a system tor would try to reach the public
# network, so forbid service starts for the duration of the install.
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ "$had_policy" = 0 ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
# tshark (wireshark-common) asks whether non-root users may capture; the
# fingerprint tests capture as root, so answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
