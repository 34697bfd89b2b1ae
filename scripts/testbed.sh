#!/usr/bin/env bash
# A test bed of emulated hosts on this machine, for running paxbench over ssh without other
# machines.
#
#   scripts/testbed.sh up DIR [N]    # N hosts (default 4: 3 node hosts and 1 client host)
#   scripts/testbed.sh down DIR      # undo everything `up DIR` made, and remove DIR
#
# Each host is a network namespace with its own sshd, joined to the others by a Linux bridge in
# the root namespace, and its own system user (its own home, as on a real VM). Addresses come
# from 198.18.0.0/15, the range reserved for benchmark testing, and are used only inside the
# namespaces made here: the bridge is 198.18.X.1/24 and host i is 198.18.X.(10+i), in the first
# /24 nobody on this machine uses yet.
#
# `up` writes into DIR (which must be empty or absent):
#   hosts.toml      a paxbench hosts file: n1..n(N-1) with roles ["node"] in regions eu/us/ap,
#                   c1 with roles ["client"] (N = 1: one host with both roles)
#   ssh_config      for `ssh -F`: the client key, a pre-written known_hosts, strict checking
#   client_key      the client's key; known_hosts; host_key-I; sshd_config-I; sshd-I.log
#   testbed.state   every namespace, link, user and pid made, one per line, recorded before
#                   (pids: right after) each is made, so `down` can undo a half-made test bed
#
# Names carry a random tag so that two test beds, or a leftover one, never clash:
# namespaces pxtb-TAG-I, bridge pxbTAG, veths pxvTAGI (root side) / pxpTAGI (host side),
# users pxtbTAGhI.
#
# `down DIR` ends exactly the recorded processes: each recorded sshd (if its pid still runs
# that sshd's config), the processes descended from it, and every process of a recorded user,
# all by pid; then it deletes the recorded namespaces, links, bridge and users and removes DIR.
# It is safe to run twice and after a failed `up`; a failed `up` undoes itself.
#
# Missing packages (openssh-server, rsync, iproute2) are installed with apt-get.
#
# Exit codes: 0 done; 1 failed; 77 this machine cannot host a test bed (not root, or no
# network namespaces), so that tests can skip with a clear line.
set -euo pipefail

readonly SKIP=77
readonly LOCK=/run/lock/paxbench-testbed.lock
readonly SSHD=/usr/sbin/sshd

say() { echo "testbed: $*" >&2; }
die() {
	say "$*"
	exit 1
}
skip() {
	say "cannot run here: $*"
	exit "$SKIP"
}

usage() {
	echo "usage: $0 up DIR [N] | $0 down DIR" >&2
	exit 1
}

# Serialises the parts that edit system-wide state (users, subnets, dpkg) between test beds.
lock() {
	exec 9>"$LOCK"
	flock -w 120 9 || die "another test bed holds $LOCK for over 2 minutes"
}
unlock() { exec 9>&-; }

install_missing() {
	local need=()
	[ -x "$SSHD" ] || need+=(openssh-server)
	command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null ||
		need+=(openssh-client)
	command -v rsync >/dev/null || need+=(rsync)
	command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
	[ ${#need[@]} -eq 0 ] && return 0
	say "installing ${need[*]}"
	command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
	# Keep the package's own sshd from starting on this machine while it is installed.
	local policy=/usr/sbin/policy-rc.d made_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0 log=$1/apt.log
	{
		export DEBIAN_FRONTEND=noninteractive
		apt-get -qq -o DPkg::Lock::Timeout=120 update &&
			apt-get -qq -y -o DPkg::Lock::Timeout=120 install --no-install-recommends "${need[@]}"
	} >"$log" 2>&1 || rc=$?
	if [ -n "$made_policy" ]; then rm -f "$policy"; fi
	if [ "$rc" -ne 0 ]; then
		tail -n 20 "$log" >&2
		die "apt-get could not install ${need[*]}"
	fi
}

# A record in the state file: "KIND VALUE...". Written before the thing is made, so that a
# crash in between leaves a record of something that may not exist (harmless to undo) rather
# than something that exists unrecorded.
record() { echo "$*" >>"$STATE"; }

# The first 198.18.X / 198.19.X /24 that no address or route on this machine uses.
free_net() {
	local used a b
	used=$(ip -4 -o addr show; ip -4 route show table all)
	for a in 18 19; do
		for b in $(seq 0 255); do
			if ! grep -qE "(^|[^0-9.])198\.$a\.$b\.[0-9]" <<<"$used"; then
				echo "198.$a.$b"
				return 0
			fi
		done
	done
	return 1
}

up() {
	local dir=$1 n=${2:-4}
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 100 ]; then
		die "N must be 1..100, not $n"
	fi
	[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, users, sshd); run as root"
	if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		die "$dir is not empty (a test bed needs an empty or new directory)"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	STATE=$dir/testbed.state
	local tag
	tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	record "dir $dir"
	record "tag $tag"
	trap 'up_failed "$dir"' EXIT

	lock
	install_missing "$dir"
	local probe=pxtb-$tag-0
	record "netns $probe"
	if ! err=$(ip netns add "$probe" 2>&1); then
		trap - EXIT
		teardown "$dir" && rm -rf -- "$dir"
		skip "network namespaces unavailable: $err"
	fi
	ip netns del "$probe"

	local net br=pxb$tag
	net=$(free_net) || die "no free /24 left in 198.18.0.0/15"
	record "net $net"
	record "link $br"
	ip link add "$br" type bridge
	ip addr add "$net.1/24" dev "$br"
	ip link set "$br" up

	ssh-keygen -q -t ed25519 -N '' -C "paxbench-testbed-$tag-client" -f "$dir/client_key"
	: >"$dir/known_hosts"
	local regions=(eu us ap) i
	local -a users addrs
	for ((i = 1; i <= n; i++)); do
		local ns=pxtb-$tag-$i veth=pxv$tag$i peer=pxp$tag$i user=pxtb${tag}h$i
		local addr=$net.$((10 + i))
		users[i]=$user
		addrs[i]=$addr
		record "netns $ns"
		ip netns add "$ns"
		record "link $veth"
		ip link add "$veth" type veth peer name "$peer" netns "$ns"
		ip link set "$veth" master "$br" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "$addr/24" dev "$peer"
		ip -n "$ns" link set "$peer" up
		ip -n "$ns" route add default via "$net.1"

		record "user $user"
		useradd --create-home --shell /bin/sh --user-group --password '*' "$user"
		local home
		home=$(getent passwd "$user" | cut -d: -f6)
		record "uid $user $(id -u "$user")"
		install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
		install -m 600 -o "$user" -g "$user" "$dir/client_key.pub" "$home/.ssh/authorized_keys"

		ssh-keygen -q -t ed25519 -N '' -C "paxbench-testbed-$tag-host-$i" -f "$dir/host_key-$i"
		echo "$addr $(cut -d' ' -f1,2 "$dir/host_key-$i.pub")" >>"$dir/known_hosts"
		cat >"$dir/sshd_config-$i" <<EOF
# sshd of test bed host $i ($addr), written by scripts/testbed.sh
ListenAddress $addr:22
HostKey $dir/host_key-$i
PidFile none
AllowUsers $user
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
StrictModes yes
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxSessions 10
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
	done
	unlock

	# sshd's privilege separation directory, as its package's service would make it.
	mkdir -p /run/sshd
	for ((i = 1; i <= n; i++)); do
		"$SSHD" -t -f "$dir/sshd_config-$i" || die "sshd rejects $dir/sshd_config-$i"
		ip netns exec "pxtb-$tag-$i" "$SSHD" -D -f "$dir/sshd_config-$i" -E "$dir/sshd-$i.log" \
			</dev/null >/dev/null 2>&1 &
		record "pid $! $dir/sshd_config-$i"
	done

	cat >"$dir/ssh_config" <<EOF
# ssh -F for the test bed in $dir, written by scripts/testbed.sh
Host *
  IdentityFile "$dir/client_key"
  IdentitiesOnly yes
  UserKnownHostsFile "$dir/known_hosts"
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  LogLevel ERROR
EOF

	{
		echo "# A paxbench hosts file for the test bed in $dir, written by scripts/testbed.sh."
		echo "# Each host is a network namespace with its own sshd and user on this machine."
		echo "[ssh]"
		echo 'config = "ssh_config"'
		for ((i = 1; i <= n; i++)); do
			local name roles region
			if [ "$n" -eq 1 ]; then
				name=n1 roles='["node", "client"]' region=eu
			elif [ "$i" -lt "$n" ]; then
				name=n$i roles='["node"]' region=${regions[$(((i - 1) % 3))]}
			else
				name=c1 roles='["client"]' region=eu
			fi
			echo
			echo "[[host]]"
			echo "name = \"$name\""
			echo "ssh = \"${users[i]}@${addrs[i]}\""
			echo "addr = \"${addrs[i]}\""
			echo "roles = $roles"
			echo "region = \"$region\""
		done
	} >"$dir/hosts.toml"

	# Every sshd accepts the client key within a bounded time.
	for ((i = 1; i <= n; i++)); do
		local deadline=$((SECONDS + 15))
		until ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=2 \
			"${users[i]}@${addrs[i]}" true 2>/dev/null; do
			if [ "$SECONDS" -ge "$deadline" ]; then
				say "host $i (${addrs[i]}) accepts no ssh connection after 15 s; its sshd log:"
				tail -n 20 "$dir/sshd-$i.log" >&2 || true
				exit 1
			fi
			sleep 0.1
		done
	done
	trap - EXIT
	say "up: $n host(s) on $net.0/24 (tag $tag); hosts file $dir/hosts.toml"
}

up_failed() {
	local rc=$?
	trap - EXIT
	say "up failed; undoing what it made"
	teardown "$1" || true
	rm -rf -- "$1"
	exit $((rc == 0 ? 1 : rc))
}

# The processes this test bed is responsible for, by pid: each recorded sshd whose pid still
# runs its recorded config, everything descended from it, and every process whose real or
# effective uid is a recorded user's. One pass over /proc, with shell builtins only.
our_pids() {
	local state=$1 kind a b p line k v1 v2 rest ppid
	local -A uids=() children=()
	local -a roots=()
	while read -r kind a b; do
		case $kind in
		pid)
			if [ -r "/proc/$a/cmdline" ] && tr '\0' ' ' <"/proc/$a/cmdline" | grep -qF -- "-f $b "; then
				roots+=("$a")
			fi
			;;
		uid) uids[$b]=1 ;;
		esac
	done <"$state"
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		{ read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
		line=${line##*) }
		read -r _ ppid _ <<<"$line"
		children[$ppid]+=" $p"
		while read -r k v1 v2 rest; do
			if [ "$k" = Uid: ]; then
				if [ -n "${uids[$v1]:-}" ] || [ -n "${uids[$v2]:-}" ]; then echo "$p"; fi
				break
			fi
		done 2>/dev/null <"/proc/$p/status" || true
	done
	local queue=("${roots[@]}") head
	while [ ${#queue[@]} -gt 0 ]; do
		head=${queue[0]}
		queue=("${queue[@]:1}")
		echo "$head"
		for p in ${children[$head]:-}; do queue+=("$p"); done
	done
}

teardown() {
	local dir=$1 state=$1/testbed.state kind a b
	[ -f "$state" ] || return 0
	# Processes: SIGTERM, a bounded wait, then SIGKILL, each by pid.
	local round pids
	for round in TERM TERM KILL; do
		pids=$(our_pids "$state" | sort -un)
		[ -n "$pids" ] || break
		# shellcheck disable=SC2086
		kill -s "$round" $pids 2>/dev/null || true
		local _
		for _ in $(seq 20); do
			[ -n "$(our_pids "$state")" ] || break
			sleep 0.1
		done
	done
	pids=$(our_pids "$state" | sort -un)
	[ -z "$pids" ] || say "still running after SIGKILL: $pids"

	lock
	local failed=0
	# Undo in reverse order of making.
	while read -r kind a b; do
		case $kind in
		netns)
			if ip netns list | grep -qE "^$a( |$)"; then ip netns del "$a" || failed=1; fi
			;;
		link)
			if ip link show "$a" >/dev/null 2>&1; then ip link del "$a" || failed=1; fi
			;;
		user)
			if getent passwd "$a" >/dev/null; then
				userdel --remove "$a" 2>/dev/null || true
				if getent passwd "$a" >/dev/null; then
					say "userdel $a failed"
					failed=1
				fi
			fi
			if getent group "$a" >/dev/null; then groupdel "$a" || failed=1; fi
			;;
		esac
	done < <(tac "$state")
	unlock
	return "$failed"
}

down() {
	local dir=$1
	if [ ! -f "$dir/testbed.state" ]; then
		say "nothing to tear down in $dir"
		return 0
	fi
	dir=$(cd "$dir" && pwd)
	teardown "$dir" || die "could not undo everything recorded in $dir/testbed.state (kept)"
	rm -rf -- "$dir"
	say "down: removed the test bed in $dir"
}

case ${1:-} in
up)
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
	up "$2" "${3:-4}"
	;;
down)
	[ $# -eq 2 ] || usage
	down "$2"
	;;
*) usage ;;
esac
