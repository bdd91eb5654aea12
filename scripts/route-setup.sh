#!/usr/bin/env bash
# route-setup.sh sets up, or checks, the routing that keeps the target's
# responses away from the real clients (docs/lab.md, "Routing on real hosts";
# C TCPCopy README "assistant" mode):
#
#   target:    the client addresses tcpcopy uses are routed via the assistant,
#              and IPv4 reverse path filtering is not strict (the copies arrive
#              with client source addresses);
#   assistant: forwarding is off, so the responses end there after intercept
#              has captured them.
#
# --check changes nothing: it says in plain words what is wrong and exits 1,
# or exits 0 when all is well. --dry-run prints the commands it would run.
# Without either, it runs them (as root) and then checks. Missing or bad
# arguments print the usage and exit 2.
set -euo pipefail

prog=${0##*/}

usage() {
	cat >&2 <<EOF
usage: $prog target --clients CIDR[,CIDR...] --assistant IP[,IP] [--dev IF] [--check | --dry-run]
       $prog assistant [--clients CIDR[,CIDR...]] [--check | --dry-run]

Run it on the host named by the first argument.

target      route each client range (the addresses the target sees as clients:
            the real clients' addresses, or tcpcopy's -c pool) via the
            assistant ("ip route replace CIDR via IP"), and make IPv4 reverse
            path filtering loose (rp_filter 2) wherever it is strict (1)
assistant   turn IPv4 and IPv6 forwarding off, so the target's responses are
            dropped here after intercept has seen them

--clients CIDR[,CIDR...]  client ranges, IPv4 and/or IPv6, e.g. 198.51.100.0/24,2001:db8:100::/64
--assistant IP[,IP]       the assistant's address on the target's network, one per family used
--dev IF                  the target's interface towards the assistant (optional)
--check                   change nothing; report what is wrong; exit 1 if anything is
--dry-run                 print the commands, run nothing
-h, --help                this text

Exit status: 0 all well (or done), 1 problems found or a command failed, 2 usage.
EOF
}

die_usage() {
	echo "$prog: $*" >&2
	usage
	exit 2
}

# ---- arguments ------------------------------------------------------------

role=
clients=()
assistants=()
dev=
mode=apply

(($# > 0)) || die_usage "missing role: target or assistant"
case $1 in
target | assistant) role=$1 ;;
-h | --help)
	usage
	exit 0
	;;
*) die_usage "unknown role '$1': want target or assistant" ;;
esac
shift

need_value() {
	if (($# < 2)) || [[ -z $2 || $2 == -* ]]; then
		die_usage "$1 needs a value"
	fi
}

while (($# > 0)); do
	case $1 in
	--clients)
		need_value "$@"
		IFS=, read -r -a more <<<"$2"
		clients+=("${more[@]}")
		shift 2
		;;
	--assistant)
		need_value "$@"
		IFS=, read -r -a more <<<"$2"
		assistants+=("${more[@]}")
		shift 2
		;;
	--dev)
		need_value "$@"
		dev=$2
		shift 2
		;;
	--check)
		[[ $mode == apply ]] || die_usage "--check and --dry-run exclude each other"
		mode=check
		shift
		;;
	--dry-run)
		[[ $mode == apply ]] || die_usage "--check and --dry-run exclude each other"
		mode=dry-run
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) die_usage "unknown argument '$1'" ;;
	esac
done

# is_ipv4 ADDR: dotted quad with octets 0..255.
is_ipv4() {
	local IFS=. o
	local -a parts
	[[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
	read -r -a parts <<<"$1"
	for o in "${parts[@]}"; do
		((10#$o <= 255)) || return 1
	done
}

# is_ipv6 ADDR: hex groups and colons (the kernel has the last word).
is_ipv6() {
	[[ $1 == *:* && $1 =~ ^[0-9a-fA-F:.]+$ && $1 != *:::* ]]
}

ip4_to_int() {
	local IFS=. a b c d
	read -r a b c d <<<"$1"
	echo $(((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#$d))
}

int_to_ip4() {
	echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# Client ranges, normalised: a bare address becomes a host route. For each
# range we keep its family and one or two addresses inside it to ask the
# kernel about ("ip route get").
c_cidr=()
c_fam=()
c_probe=()
for c in "${clients[@]}"; do
	[[ -n $c ]] || die_usage "empty client range in --clients"
	addr=${c%/*}
	if [[ $c == */* ]]; then bits=${c##*/}; else bits=; fi
	if is_ipv4 "$addr"; then
		[[ -z $bits ]] && bits=32
		if ! [[ $bits =~ ^[0-9]{1,2}$ ]] || ((bits > 32)); then
			die_usage "bad prefix length in '$c'"
		fi
		n=$(ip4_to_int "$addr")
		mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
		net=$((n & mask))
		if ((net != n)); then
			die_usage "'$c' has host bits set: did you mean $(int_to_ip4 "$net")/$bits?"
		fi
		last=$((net | (~mask & 0xffffffff)))
		probes=$(int_to_ip4 "$net")
		if ((bits <= 30)); then
			probes="$(int_to_ip4 $((net + 1))) $(int_to_ip4 $((last - 1)))"
		fi
		c_cidr+=("$(int_to_ip4 "$net")/$bits")
		c_fam+=(4)
		c_probe+=("$probes")
	elif is_ipv6 "$addr"; then
		[[ -z $bits ]] && bits=128
		if ! [[ $bits =~ ^[0-9]{1,3}$ ]] || ((bits > 128)); then
			die_usage "bad prefix length in '$c'"
		fi
		probe=$addr
		[[ $addr == *:: ]] && probe=${addr}1
		c_cidr+=("$addr/$bits")
		c_fam+=(6)
		c_probe+=("$probe")
	else
		die_usage "'$c' is not an IPv4 or IPv6 range"
	fi
done

assist4=
assist6=
for a in "${assistants[@]}"; do
	if is_ipv4 "$a"; then
		[[ -z $assist4 ]] || die_usage "two IPv4 assistant addresses: $assist4 and $a"
		assist4=$a
	elif is_ipv6 "$a"; then
		[[ -z $assist6 ]] || die_usage "two IPv6 assistant addresses: $assist6 and $a"
		assist6=$a
	else
		die_usage "'$a' is not an IPv4 or IPv6 address"
	fi
done

case $role in
target)
	((${#c_cidr[@]} > 0)) || die_usage "target needs --clients"
	((${#assistants[@]} > 0)) || die_usage "target needs --assistant"
	for i in "${!c_cidr[@]}"; do
		if [[ ${c_fam[i]} == 4 && -z $assist4 ]]; then
			die_usage "${c_cidr[i]} is IPv4 but --assistant has no IPv4 address"
		fi
		if [[ ${c_fam[i]} == 6 && -z $assist6 ]]; then
			die_usage "${c_cidr[i]} is IPv6 but --assistant has no IPv6 address"
		fi
	done
	;;
assistant)
	((${#assistants[@]} == 0)) || die_usage "--assistant is for the target"
	[[ -z $dev ]] || die_usage "--dev is for the target"
	;;
esac

# ---- helpers --------------------------------------------------------------

command -v ip >/dev/null 2>&1 || {
	echo "$prog: the ip command (iproute2) is needed" >&2
	exit 1
}
if [[ -n $dev && ! -e /sys/class/net/$dev ]]; then
	echo "$prog: there is no interface '$dev' on this host" >&2
	exit 1
fi

problems=0
problem() {
	echo "PROBLEM: $*"
	problems=$((problems + 1))
}
ok() { echo "ok: $*"; }
note() { echo "note: $*"; }

# get PATH: a value under /proc/sys (path relative to it), or empty.
get() {
	local v
	v=$(cat "/proc/sys/$1" 2>/dev/null) || v=
	echo "$v"
}

# sysctl_cmd PATH VALUE prints the sysctl command that sets /proc/sys/PATH
# (what the plan shows; it writes the file itself). Interface names may
# hold dots, which sysctl writes as slashes.
sysctl_cmd() {
	local key='' part
	local IFS=/
	for part in $1; do
		key+=${key:+.}${part//./\/}
	done
	echo "sysctl -w $key=$2"
}

# The plan: what to print, and what to run. Every word of a command is
# validated above or read from /proc, and none holds a space.
shown=()
todo=()
plan_ip() {
	shown+=("ip $*")
	todo+=("ip $*")
}
plan_sysctl() {
	shown+=("$(sysctl_cmd "$1" "$2")")
	todo+=("write $1 $2")
}

run_plan() {
	local i words
	if ((${#todo[@]} == 0)); then
		echo "nothing to change"
		return 0
	fi
	for i in "${!todo[@]}"; do
		echo "+ ${shown[i]}"
		[[ $mode == apply ]] || continue
		read -r -a words <<<"${todo[i]}"
		if [[ ${words[0]} == write ]]; then
			if ! printf '%s\n' "${words[2]}" >"/proc/sys/${words[1]}"; then
				echo "$prog: failed: ${shown[i]}" >&2
				exit 1
			fi
		elif ! "${words[@]}"; then
			echo "$prog: failed: ${shown[i]}" >&2
			exit 1
		fi
	done
}

# Interfaces with an IPv4 configuration, lo excluded.
interfaces4() {
	local d n
	for d in /proc/sys/net/ipv4/conf/*; do
		n=${d##*/}
		case $n in all | default | lo) continue ;; esac
		echo "$n"
	done
}

# route_get ADDR prints "ip route get" for ADDR on one line, or nothing.
route_get() {
	local fam=-4
	[[ $1 == *:* ]] && fam=-6
	ip "$fam" -o route get "$1" 2>/dev/null | head -n 1 || true
}

# field WORD LINE prints the word after WORD in LINE.
field() {
	local w prev=
	for w in $2; do
		if [[ $prev == "$1" ]]; then
			echo "$w"
			return
		fi
		prev=$w
	done
}

# ---- target ---------------------------------------------------------------

check_target() {
	local i fam via probe r rdev gw out kind a
	local -A route_devs=()
	for a in $assist4 $assist6; do
		r=$(route_get "$a")
		kind=${r%% *}
		if [[ -z $r ]]; then
			problem "the assistant $a is unreachable from this host (no route)"
		elif [[ $kind == local ]]; then
			problem "the assistant address $a is this host itself"
		elif [[ -n $(field via "$r") ]]; then
			problem "the assistant $a is not on a directly connected network (reached via $(field via "$r")): the responses must go to it in one hop"
		fi
	done
	for i in "${!c_cidr[@]}"; do
		fam=${c_fam[i]}
		via=$assist4
		[[ $fam == 6 ]] && via=$assist6
		out=$(ip -"$fam" -o addr show to "${c_cidr[i]}" 2>/dev/null || true)
		if [[ -n $out ]]; then
			problem "this host has addresses inside the client range ${c_cidr[i]} ($(awk '{print $4 " on " $2}' <<<"$out" | paste -sd, -)): copies from those addresses would be answered locally"
		fi
		for probe in ${c_probe[i]}; do
			r=$(route_get "$probe")
			kind=${r%% *}
			gw=$(field via "$r")
			rdev=$(field dev "$r")
			if [[ -z $r || $kind == unreachable || $kind == blackhole || $kind == prohibit ]]; then
				problem "no route to the client $probe (${c_cidr[i]}): the target cannot answer the copies (ip route replace ${c_cidr[i]} via $via)"
			elif [[ $kind == local ]]; then
				problem "the client address $probe is local on this host"
			elif [[ $gw != "$via" ]]; then
				if [[ -n $gw ]]; then
					problem "responses to the client $probe (${c_cidr[i]}) go via $gw, not via the assistant $via: they would reach the real clients"
				else
					problem "responses to the client $probe (${c_cidr[i]}) go straight out of $rdev, not via the assistant $via: they would reach the real clients"
				fi
			elif [[ -n $dev && $rdev != "$dev" ]]; then
				problem "responses to the client $probe leave by $rdev, not by --dev $dev"
			else
				ok "responses to $probe (${c_cidr[i]}) go via the assistant $via ($rdev)"
				route_devs[$rdev]=1
			fi
		done
	done

	# IPv4 reverse path filtering: the effective value of an interface is
	# max(all, interface) (Documentation/networking/ip-sysctl.rst). Strict
	# mode (1) drops a copy unless the route back to its client source
	# leaves by the interface it came in on; loose (2) and off (0) let it
	# in once the client range has a route.
	if [[ " ${c_fam[*]} " == *" 4 "* ]]; then
		local all n v eff strict=()
		all=$(get net/ipv4/conf/all/rp_filter)
		all=${all:-0}
		while read -r n; do
			[[ -n $n ]] || continue
			v=$(get "net/ipv4/conf/$n/rp_filter")
			eff=$((${v:-0} > all ? ${v:-0} : all))
			if ((eff == 1)) && [[ -z ${route_devs[$n]:-} ]]; then
				strict+=("$n")
			fi
		done < <(interfaces4)
		if ((${#strict[@]} > 0)); then
			problem "rp_filter is strict on ${strict[*]} (net.ipv4.conf.all.rp_filter=$all): copies arriving there with client source addresses are dropped silently"
		else
			ok "rp_filter lets copies with client source addresses in"
		fi
		if [[ $(get net/ipv4/conf/default/rp_filter) == 1 ]]; then
			note "net.ipv4.conf.default.rp_filter is 1: interfaces created later start strict"
		fi
	fi
	if [[ " ${c_fam[*]} " == *" 6 "* ]]; then
		note "IPv6 has no rp_filter sysctl; a firewall rule (nftables 'fib saddr', firewalld IPv6_rpfilter) can still drop the copies"
	fi
}

plan_target() {
	local i fam via n v
	for i in "${!c_cidr[@]}"; do
		fam=${c_fam[i]}
		via=$assist4
		[[ $fam == 6 ]] && via=$assist6
		plan_ip "-$fam" route replace "${c_cidr[i]}" via "$via"${dev:+ dev "$dev"}
	done
	if [[ " ${c_fam[*]} " == *" 4 "* ]]; then
		# Strict (1) becomes loose (2) wherever it is set; 0 and 2 stay.
		for n in all default $(interfaces4); do
			v=$(get "net/ipv4/conf/$n/rp_filter")
			if [[ $v == 1 ]]; then
				plan_sysctl "net/ipv4/conf/$n/rp_filter" 2
			fi
		done
	fi
}

# ---- assistant ------------------------------------------------------------

check_assistant() {
	local n v on=() i out
	if [[ $(get net/ipv4/ip_forward) == 1 ]]; then
		problem "IPv4 forwarding is on (net.ipv4.ip_forward=1): responses would reach the real clients"
	fi
	while read -r n; do
		[[ -n $n ]] || continue
		if [[ $(get "net/ipv4/conf/$n/forwarding") == 1 ]]; then
			on+=("$n")
		fi
	done < <(interfaces4)
	if ((${#on[@]} > 0)) && [[ $(get net/ipv4/ip_forward) != 1 ]]; then
		problem "IPv4 forwarding is on for ${on[*]}: responses arriving there would reach the real clients"
	fi
	if [[ -e /proc/sys/net/ipv6/conf/all/forwarding ]]; then
		if [[ $(get net/ipv6/conf/all/forwarding) == 1 ]]; then
			problem "IPv6 forwarding is on (net.ipv6.conf.all.forwarding=1): responses would reach the real clients"
		fi
		on=()
		for n in /proc/sys/net/ipv6/conf/*/force_forwarding; do
			[[ -e $n ]] || continue
			if [[ $(cat "$n" 2>/dev/null) == 1 ]]; then
				n=${n%/*}
				on+=("${n##*/}")
			fi
		done
		if ((${#on[@]} > 0)); then
			problem "IPv6 forwarding is forced on for ${on[*]} (force_forwarding=1): responses would reach the real clients"
		fi
	fi
	if ((problems == 0)); then
		ok "forwarding is off: the target's responses end here"
	fi
	for i in "${!c_cidr[@]}"; do
		out=$(ip -"${c_fam[i]}" -o addr show to "${c_cidr[i]}" 2>/dev/null || true)
		if [[ -n $out ]]; then
			problem "this host has addresses inside the client range ${c_cidr[i]} ($(awk '{print $4 " on " $2}' <<<"$out" | paste -sd, -)): it would answer the target's responses itself, with resets"
		fi
	done
	if command -v ss >/dev/null 2>&1; then
		if [[ -z $(ss -Hltn 'sport = :36524' 2>/dev/null || true) ]]; then
			note "nothing listens on port 36524: intercept is not running (or uses another -p)"
		fi
	fi
}

plan_assistant() {
	local n
	if [[ $(get net/ipv4/ip_forward) == 1 ]]; then
		plan_sysctl net/ipv4/ip_forward 0
	fi
	# ip_forward=0 turns every interface off too; catch those set apart.
	for n in $(interfaces4); do
		if [[ $(get net/ipv4/ip_forward) != 1 && $(get "net/ipv4/conf/$n/forwarding") == 1 ]]; then
			plan_sysctl "net/ipv4/conf/$n/forwarding" 0
		fi
	done
	if [[ $(get net/ipv6/conf/all/forwarding) == 1 ]]; then
		plan_sysctl net/ipv6/conf/all/forwarding 0
	fi
	for n in /proc/sys/net/ipv6/conf/*/force_forwarding; do
		[[ -e $n ]] || continue
		if [[ $(cat "$n" 2>/dev/null) == 1 ]]; then
			n=${n#/proc/sys/}
			plan_sysctl "$n" 0
		fi
	done
}

# ---- main -----------------------------------------------------------------

case $mode in
check)
	"check_$role"
	if ((problems > 0)); then
		echo "$role: $problems problem(s) found"
		exit 1
	fi
	echo "$role: all checks passed"
	exit 0
	;;
dry-run)
	"plan_$role"
	run_plan
	exit 0
	;;
apply)
	if [[ $(id -u) != 0 ]]; then
		echo "$prog: changing routes and sysctls needs root (use --check or --dry-run without)" >&2
		exit 1
	fi
	if [[ $role == target ]]; then
		# Addresses of this host inside a client range cannot be fixed by
		# routing: refuse before changing anything.
		for i in "${!c_cidr[@]}"; do
			if [[ -n $(ip -"${c_fam[i]}" -o addr show to "${c_cidr[i]}" 2>/dev/null || true) ]]; then
				echo "$prog: this host has addresses inside the client range ${c_cidr[i]}; choose another range (tcpcopy -c)" >&2
				exit 1
			fi
		done
	else
		note "forwarding off: this host stops routing packets for others"
	fi
	"plan_$role"
	run_plan
	echo "checking:"
	"check_$role"
	if ((problems > 0)); then
		echo "$role: $problems problem(s) left"
		exit 1
	fi
	if [[ $role == target ]]; then
		echo "target: ready. These settings do not survive a reboot: put the sysctls in /etc/sysctl.d/ and the routes in the network configuration."
	else
		echo "assistant: ready. These settings do not survive a reboot: put them in /etc/sysctl.d/ (net.ipv4.ip_forward = 0, net.ipv6.conf.all.forwarding = 0)."
	fi
	;;
esac
