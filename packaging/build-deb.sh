#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build the storkeep .deb for the host architecture from the Debian source
# package in debian/, with dpkg-buildpackage.
#
# Usage: packaging/build-deb.sh VERSION OUTDIR
#
# VERSION is what `git describe --tags --always --dirty` prints (a leading
# "v" is dropped). The binaries report it as it is, and the package version
# is a valid Debian form of it: when it is not the version at the top of
# debian/changelog, an entry for it is added to the copy that is built.
# The source tree (git's files, committed or not) is copied to a scratch
# directory, since dpkg-buildpackage writes beside the tree it builds.
# The Go modules are vendored into that copy (go mod vendor: from the module
# cache, or through GOPROXY), so the source package holds them. OUTDIR gets
# the .deb, the source package (.dsc, .tar.xz), .buildinfo and .changes,
# and dpkg-buildpackage's log (shown only when it fails); the .deb's path is
# printed on the last line.
#
# Environment:
#   GO   the go command (default: go); debian/rules uses it, so a Go from
#        outside the archive (Debian 12 has none >= 1.25) works. The
#        package's Build-Depends name golang-go; their check is skipped
#        (dpkg-buildpackage -d) for that reason. The tests are not run
#        here (nocheck): make test runs them.
set -euo pipefail

if [ "$#" -ne 2 ]; then
	echo "usage: $0 VERSION OUTDIR" >&2
	exit 2
fi
version=$1
outdir=$2
GO=${GO:-go}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

for tool in dpkg-buildpackage dh dpkg-parsechangelog; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-deb: $tool is missing (packages dpkg-dev, debhelper; make deps installs them)" >&2
		exit 1
	fi
done

base=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)

# deb_version turns a git describe string into a Debian version:
#   v1.2.0                  -> 1.2.0
#   v1.2.0-3-gabc1234-dirty -> 1.2.0+3+gabc1234+dirty
#   0.1.0~dev               -> 0.1.0~dev
#   abc1234 (no tag)        -> <changelog version>+git.abc1234
deb_version() {
	local v=${1#v}
	v=${v//-/+}
	# A tag looks like 1.2 or 1.2.3; anything else (a bare commit hash,
	# which may well start with a digit) is no release: a snapshot after
	# the version at the top of debian/changelog.
	if ! [[ $v =~ ^[0-9]+\.[0-9] ]]; then
		v="$base+git.$v"
	fi
	if ! [[ $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
		echo "build-deb: cannot make a Debian version of '$1'" >&2
		return 1
	fi
	printf '%s\n' "$v"
}

pkgversion=$(deb_version "$version")
arch=$(dpkg --print-architecture)

work=$(mktemp -d "${TMPDIR:-/tmp}/storkeep-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/storkeep-$pkgversion
mkdir -p "$src"

# The tree: git's files (tracked, and untracked ones it does not ignore),
# or everything but build output outside a git checkout.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf -) | tar -xf - -C "$src"
else
	tar -C "$top" --exclude=./.git --exclude=./dist --exclude=./bin -cf - . | tar -xf - -C "$src"
fi

# The Go modules go into the source package (vendor/), so that it is whole
# and builds offline; the repository itself vendors nothing.
if ! out=$(cd "$src" && GOFLAGS=-mod=mod "$GO" mod vendor 2>&1); then
	printf '%s\n' "$out" >&2
	echo "build-deb: go mod vendor failed" >&2
	exit 1
fi

if [ "$pkgversion" != "$base" ]; then
	date=$(git -C "$top" log -1 --format=%cD 2>/dev/null || date -R)
	maint=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Maintainer)
	{
		printf 'storkeep (%s) unstable; urgency=medium\n\n' "$pkgversion"
		printf '  * Snapshot built from git: %s.\n\n' "$version"
		printf ' -- %s  %s\n\n' "$maint" "$date"
		cat "$top/debian/changelog"
	} >"$src/debian/changelog"
fi

log=$outdir/storkeep_${pkgversion}_build.log
echo "build-deb: dpkg-buildpackage $pkgversion for $arch with $("$GO" version) (log: $log)" >&2
if ! (
	cd "$src"
	export GO STORKEEP_VERSION=$version
	export DEB_BUILD_OPTIONS="nocheck${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
	dpkg-buildpackage -us -uc -d -Pnocheck --build=source,binary
) >"$log" 2>&1; then
	tail -n 60 "$log" >&2
	echo "build-deb: dpkg-buildpackage failed; the whole log: $log" >&2
	exit 1
fi

shopt -s nullglob
files=("$work"/storkeep_"$pkgversion"*)
if [ "${#files[@]}" -eq 0 ]; then
	echo "build-deb: dpkg-buildpackage made no storkeep_$pkgversion files" >&2
	exit 1
fi
cp "${files[@]}" "$outdir/"
deb=$outdir/storkeep_${pkgversion}_${arch}.deb
[ -f "$deb" ] || { echo "build-deb: $deb was not built" >&2; exit 1; }
echo "$deb"
