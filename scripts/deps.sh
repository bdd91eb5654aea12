#!/usr/bin/env bash
# deps.sh installs what building and testing need on a fresh Debian machine:
# libpcap headers (the one cgo package compiles tcpdump filters with
# libpcap), iproute2 (the namespace lab), ethtool, nftables (the lab's
# random loss), tcpdump (the lab's client-side recordings), nginx (the lab's
# nginx target servers, and its TLS terminator, which needs the SSL module
# Debian's nginx has), shellcheck (the route-setup script is checked
# by a test), chromium with a font (the page test opens tcpcopy's live page
# in headless Chromium; about 100 MB, installed once, never upgraded here)
# and mariadb-server (the MySQL lab and its tests: docs/mysql.md). It only
# installs what is missing, and only as root; otherwise it says what to
# install.
set -euo pipefail

missing=()
[[ -f /usr/include/pcap.h || -f /usr/include/pcap/pcap.h ]] || missing+=(libpcap-dev)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Without any font headless Chromium draws no text in screenshots.
[[ -d /usr/share/fonts/truetype/dejavu ]] || missing+=(fonts-dejavu-core)
# Debian puts nginx in /usr/sbin, not on every PATH. An nginx without the
# SSL module cannot terminate TLS: Debian's nginx package has it (in
# Debian 12 nginx-light is only a transitional package that installs it).
nginx_bin=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
nginx_v=
[[ -x $nginx_bin ]] && nginx_v=$("$nginx_bin" -V 2>&1 || true)
[[ $nginx_v == *--with-http_ssl_module* ]] || missing+=(nginx)
command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server mariadb-client)

if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "deps: missing packages: ${missing[*]}; install them as root (apt-get install -y ${missing[*]})" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The lab runs nginx itself, inside a namespace: the package must not start
# the system's nginx on this host's port 80. Unless the machine already
# has a policy, one that denies every service start is in place for the
# install (invoke-rc.d, policy-rc.d(8)).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# deps.sh: no service starts during the install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
