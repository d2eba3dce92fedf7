# Shared by tests/run.sh and examples/demo.sh (sourced, not run):
# installs what a fresh Debian 12 machine lacks, and builds the agent.

FLA_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the build, the tests and the demo need.
FLA_PACKAGES="gcc make autoconf automake libtool pkg-config
  libldap2-dev libmicrohttpd-dev libcjson-dev libyaml-dev libcurl4-openssl-dev libsqlite3-dev libicu-dev
  libsystemd-dev libcmocka-dev slapd ldap-utils python3 ca-certificates"

# Only the tests need these: a real Samba AD domain controller for the
# Active Directory profile (tests/integration/test_samba.py).
FLA_TEST_PACKAGES="samba samba-ad-dc samba-ad-provision winbind krb5-user ldb-tools 389-ds-base"
# ... and clang with libFuzzer for the fuzz targets (fuzz/run.sh).
FLA_TEST_PACKAGES="$FLA_TEST_PACKAGES clang libclang-rt-14-dev"
# ... and the Debian packaging tools, systemd-analyze and man (tests/package.sh).
FLA_TEST_PACKAGES="$FLA_TEST_PACKAGES dpkg-dev debhelper fakeroot lintian systemd man-db"

fla_say() { printf '==> %s\n' "$*" >&2; }

# fla_install_deps [EXTRA_PACKAGES]: installs what is missing of FLA_PACKAGES
# and the extra packages named.
fla_install_deps() {
	local missing="" p
	for p in $FLA_PACKAGES ${1:-}; do
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
	# The packages' own postinst scripts must not ask questions, nor start a
	# system slapd or Samba: the tests start their own servers, and Samba's
	# LDAP port is fixed.  Without a policy-rc.d in place, one that refuses
	# every start (exit 101) is put there for the installation only.
	export DEBIAN_FRONTEND=noninteractive
	local policy=/usr/sbin/policy-rc.d added="" rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && added=1
	fi
	# shellcheck disable=SC2086
	$sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=1
	[ -n "$added" ] && $sudo rm -f "$policy"
	return $rc
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
