# Shared by tests/run.sh and examples/demo.sh (sourced, not run):
# installs what a fresh Debian 12 machine lacks, and builds the agent.

FLA_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the build, the tests and the demo need.
FLA_PACKAGES="gcc make autoconf automake libtool pkg-config
  libldap2-dev libmicrohttpd-dev libcjson-dev libyaml-dev libcurl4-openssl-dev libsqlite3-dev
  libcmocka-dev slapd ldap-utils python3 ca-certificates"

fla_say() { printf '==> %s\n' "$*" >&2; }

fla_install_deps() {
	local missing="" p
	for p in $FLA_PACKAGES; do
		if [ "$p" = python3 ] && command -v python3 >/dev/null 2>&1; then
			continue
		fi
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
			missing="$missing $p"
		fi
	done
	[ -z "$missing" ] && return 0
	fla_say "installing:$missing"
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo="sudo"
		else
			echo "error: missing packages:$missing; run as root or install them" >&2
			return 1
		fi
	fi
	# slapd's own postinst must not start a system server or ask questions
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq || return 1
	# shellcheck disable=SC2086
	$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null || return 1
}

# fla_build BUILD_DIR [configure options...]: autogen, configure (again when
# the options change) and make, out of tree.
fla_build() {
	local dir=$1
	shift
	local opts="$*"
	(
		set -e
		cd "$FLA_TOP"
		if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
			fla_say "autogen"
			./autogen.sh >/dev/null 2>&1 || ./autogen.sh
		fi
		mkdir -p "$dir"
		cd "$dir"
		if [ ! -f config.status ] || [ "$(cat .fla-configure-opts 2>/dev/null)" != "$opts" ]; then
			fla_say "configure $opts"
			# shellcheck disable=SC2086
			"$FLA_TOP/configure" $opts >configure.out 2>&1 || { cat configure.out >&2; exit 1; }
			printf '%s' "$opts" >.fla-configure-opts
		fi
		fla_say "make"
		make -j"$(nproc)" >make.out 2>&1 || { cat make.out >&2; exit 1; }
	)
}
