#!/usr/bin/env bash
# The Debian package, as a sysadmin gets it: built from the tree with
# dpkg-buildpackage, checked by lintian, installed, its unit verified by
# systemd-analyze, its man pages read by man --warnings, the installed
# example configuration and profile checked by the installed program, then
# purged.  Prints one line per step and "package: N passed, N failed".
# Needs root (it installs the package); tests/run.sh runs it.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/fla-package-XXXXXX)
passed=0
failed=0
step() { # step NAME COMMAND...: runs it, says ok or not ok with its output
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "ok - package: $name"
		passed=$((passed + 1))
	else
		echo "not ok - package: $name"
		printf '%s\n' "$out" | tail -30 | sed 's/^/    | /'
		failed=$((failed + 1))
	fi
}
cleanup() {
	dpkg --purge factorial-ldap-agent >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

src="$work/factorial-ldap-agent"
mkdir -p "$src"
if [ -d "$top/.git" ]; then
	git -C "$top" ls-files -z | (cd "$top" && xargs -0 cp --parents -t "$src")
else
	(cd "$top" && tar --exclude=./_build -cf - .) | tar -xf - -C "$src"
fi
build() { cd "$src" && dpkg-buildpackage -us -uc -b; }
step "dpkg-buildpackage -us -uc -b builds it" build
deb=$(ls "$work"/factorial-ldap-agent_*_*.deb 2>/dev/null | head -1)
no_lintian_errors() { ! lintian "$deb" 2>/dev/null | grep '^E:'; }
step "lintian shows no error" no_lintian_errors
step "dpkg -i installs it" dpkg -i "$deb"
step "it made the system user" getent passwd factorial-ldap-agent
step "systemd-analyze verify finds nothing wrong in its unit" \
	sh -c '! systemd-analyze verify /lib/systemd/system/factorial-ldap-agent.service 2>&1 | grep .'
man_clean() {
	local p
	for p in man8/factorial-ldap-agent.8 man5/factorial-ldap-agent.yaml.5 man5/factorial-ldap-agent-mapping.5; do
		[ -f "/usr/share/man/$p.gz" ] || { echo "no $p"; return 1; }
		man --warnings -l "/usr/share/man/$p.gz" 2>&1 >/dev/null | grep . && return 1
	done
	return 0
}
step "its three man pages render without warnings" man_clean
installed_check() {
	local d=/etc/factorial-ldap-agent
	[ -s "$d/challenge" ] || { echo "the install made no challenge"; return 1; }
	(umask 077 && echo "api-key-of-the-site" >"$d/api-key" && echo "directory-password" >"$d/ldap-password")
	/usr/sbin/factorial-ldap-agent -c "$d/agent.yaml" check | grep -qx 'configuration ok' &&
		/usr/sbin/factorial-ldap-agent check -m /usr/share/factorial-ldap-agent/mappings/openldap-sites.yaml \
			--fixtures /usr/share/factorial-ldap-agent/mappings/fixtures/openldap-sites | tail -1 |
		grep -qx '1 fixtures: 1 ok, 0 differ'
}
step "the installed program checks the installed example and a profile's fixtures" installed_check
purged() { dpkg --purge factorial-ldap-agent && [ ! -e /usr/sbin/factorial-ldap-agent ] && [ ! -e /etc/factorial-ldap-agent/challenge ]; }
step "dpkg --purge removes it" purged
echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
