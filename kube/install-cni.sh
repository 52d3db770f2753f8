#!/bin/sh
# Installs cnid's CNI plugin and conflist on the node: the DaemonSet's init
# container runs it with the host's /opt/cni/bin and /etc/cni/net.d mounted.
#
#   install-cni.sh [--plugin FILE] [--bin-dir DIR] [--conf-dir DIR]
#
# Defaults come from $CNID_PLUGIN (/opt/cnid/cnid-plugin), $CNI_BIN_DIR
# (/host/opt/cni/bin) and $CNI_CONF_DIR (/host/etc/cni/net.d).
#
# Each file is written to a temporary name in its target directory and
# renamed over the old one: the runtime, which may exec the plugin or read
# the conflist at any moment, sees the old file or the new one, never a
# partial one, and replacing a running plugin never fails with ETXTBSY. A
# file that is already identical is left alone, so a rerun changes nothing.
set -eu

plugin=${CNID_PLUGIN:-/opt/cnid/cnid-plugin}
bin_dir=${CNI_BIN_DIR:-/host/opt/cni/bin}
conf_dir=${CNI_CONF_DIR:-/host/etc/cni/net.d}

usage() {
    echo "usage: $0 [--plugin FILE] [--bin-dir DIR] [--conf-dir DIR]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --plugin) [ $# -ge 2 ] || usage; plugin=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
        --conf-dir) [ $# -ge 2 ] || usage; conf_dir=$2; shift 2 ;;
        *) usage ;;
    esac
done

[ -f "$plugin" ] || { echo "install-cni: no plugin at $plugin" >&2; exit 1; }

tmp=""
cleanup() { [ -z "$tmp" ] || rm -f "$tmp"; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# install_file SOURCE DIR NAME MODE: atomically make DIR/NAME a copy of SOURCE.
install_file() {
    if cmp -s "$1" "$2/$3"; then
        chmod "$4" "$2/$3"
        echo "install-cni: $2/$3 is up to date"
        return
    fi
    tmp=$(mktemp "$2/.$3.XXXXXX")
    cp "$1" "$tmp"
    chmod "$4" "$tmp"
    mv -f "$tmp" "$2/$3"
    tmp=""
    echo "install-cni: installed $2/$3"
}

mkdir -p "$bin_dir" "$conf_dir"
install_file "$plugin" "$bin_dir" cnid-plugin 0755

conflist=$(mktemp)
trap 'cleanup; rm -f "$conflist"' EXIT
cat >"$conflist" <<'CONFLIST'
{
  "cniVersion": "1.0.0",
  "name": "cnid",
  "plugins": [
    {
      "type": "cnid-plugin"
    }
  ]
}
CONFLIST
install_file "$conflist" "$conf_dir" 10-cnid.conflist 0644
