# Shared helpers for scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# Both scripts are meant to work as root on a fresh Debian 12 machine that has
# only the PostgreSQL 15 server: they install the build dependencies, build and
# install the extension, and run servers as the unprivileged "postgres" user
# (initdb refuses to run as root).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PG_CONFIG may point at another (e.g. a private, relocated) copy of the
# PostgreSQL 15 installation; build, install and servers then all use it.
PG_BIN=/usr/lib/postgresql/15/bin
if [ -n "${PG_CONFIG:-}" ]; then
	PG_BIN=$("$PG_CONFIG" --bindir)
	export PG_CONFIG
fi
export PATH="$PG_BIN:$PATH"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_deps: install what building and testing need, if anything is missing.
ensure_deps() {
	local missing=()
	command -v make >/dev/null 2>&1 || missing+=(make)
	command -v gcc >/dev/null 2>&1 || missing+=(gcc)
	[ -f /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk ] || missing+=(postgresql-server-dev-15)
	[ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
	perl -MIPC::Run -e1 >/dev/null 2>&1 || missing+=(libipc-run-perl)
	command -v prove >/dev/null 2>&1 || missing+=(perl)
	command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run as root so they can be installed"
		say "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		local log
		log=$(mktemp)
		if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" postgresql-server-dev-15 libipc-run-perl make gcc libc6-dev; } >"$log" 2>&1; then
			cat "$log" >&2
			die "installing ${missing[*]} failed"
		fi
		rm -f "$log"
	fi
	id postgres >/dev/null 2>&1 || die "no postgres user (is the postgresql-15 package installed?)"
}

# build_install: compile warning-free and install into the server's directories.
build_install() {
	say "building and installing cdp_traits"
	make -C "$REPO" -s WERROR=1 >/dev/null
	if [ "$(id -u)" = 0 ]; then
		make -C "$REPO" -s install >/dev/null
	else
		sudo make -C "$REPO" -s install >/dev/null
	fi
}

# as_postgres CMD...: run a command as the postgres user (we may already be it).
as_postgres() {
	if [ "$(id -un)" = postgres ]; then
		"$@"
	elif [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		sudo -u postgres -- "$@"
	fi
}

# scratch_copy DIR: a copy of the source tree that the postgres user owns, so
# that test servers and result files can be written without touching the
# caller's checkout.
scratch_copy() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	tar -C "$REPO" --exclude=.git --exclude='./tmp_check*' --exclude=./results \
		--exclude=./output_iso --exclude=./.demo -cf - . | tar -C "$dir" -xf -
	chown -R postgres: "$dir"
}

# start_cluster DIR PORT [CONF_LINES]: initdb a throw-away cluster in DIR/data
# (as postgres, socket in DIR, the library preloaded, the worker off, plus any
# extra settings), start it, and stop and remove it when the script exits
# (then run CLUSTER_AFTER_STOP, if set).
start_cluster() {
	local dir=$1 port=$2 extra=${3:-}
	chown postgres: "$dir"
	CLUSTER_DIR=$dir
	trap 'as_postgres pg_ctl -D "$CLUSTER_DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"; eval "${CLUSTER_AFTER_STOP:-}"' EXIT
	as_postgres initdb -D "$dir/data" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = off
$extra
CONF
	as_postgres pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}
