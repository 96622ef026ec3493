#!/usr/bin/env bash
# Fails (exit 1, naming the files) when the committed generated API files are
# stale: it copies the sources to a temporary tree, runs gen.sh there from a
# clean gen/, and compares the generated protos of tools/k8sproto and all of
# gen/ with the committed ones. Hand-written files in gen/ (no "Code generated"
# header) are left alone. Exit 2 if regeneration itself fails. Never writes to
# the working tree; CI runs it after checkout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/k8sproto-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/tools"
cp "$root/go.mod" "$root/go.sum" "$tmp/"
cp -R "$root/tools/k8sproto" "$tmp/tools/"
cp -R "$root/proto" "$tmp/"

if ! out="$(bash "$tmp/tools/k8sproto/gen.sh" 2>&1)"; then
	echo "check.sh: regeneration failed:" >&2
	echo "$out" >&2
	exit 2
fi

# Generated protos owned by tools/k8sproto, and everything buf writes.
dirs=(gen)
for g in meta core apps networking coordination rbac storage autoscaling policy; do
	dirs+=("proto/api/rafter/$g/v1")
done

# generated reports whether a committed file (relative to the repo root) is
# generator output; hand-written files kept beside generated code (such as an
# embed of the OpenAPI document) are not stale just because nothing generates them.
generated() {
	case "$1" in
	*.proto | *.pb.go | *.pb.gw.go | *.swagger.json) return 0 ;;
	esac
	grep -qE '^// Code generated .* DO NOT EDIT\.$' "$root/$1"
}

stale=()
for d in "${dirs[@]}"; do
	mkdir -p "$root/$d" "$tmp/$d"
	while IFS= read -r line; do
		case "$line" in
		"Files "*" differ")
			f="${line#Files "$root/"}"
			stale+=("${f%% and *} (differs)")
			;;
		"Only in $root/"*)
			rest="${line#Only in "$root/"}"
			while IFS= read -r f; do
				f="${f#"$root/"}"
				if generated "$f"; then
					stale+=("$f (not generated any more)")
				fi
			done < <(find "$root/${rest%%: *}/${rest#*: }" -type f)
			;;
		"Only in $tmp/"*)
			rest="${line#Only in "$tmp/"}"
			stale+=("${rest%%: *}/${rest#*: } (missing)")
			;;
		*) stale+=("$line") ;;
		esac
	done < <(diff -rq "$root/$d" "$tmp/$d" || true)
done

if ((${#stale[@]} > 0)); then
	echo "check.sh: generated API files are stale; run tools/k8sproto/gen.sh (make proto):" >&2
	printf '  %s\n' "${stale[@]}" >&2
	exit 1
fi
echo "check.sh: generated API files are up to date"
