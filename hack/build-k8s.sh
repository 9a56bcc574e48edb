#!/usr/bin/env bash
# Build the real Kubernetes binaries vcluster-py runs locally (tests and `vcluster-py up`), from Go
# modules only, and cache them per version under the user's cache directory.
#
# Why a wrapper module: k8s.io/kubernetes requires every staging module at v0.0.0 and maps them with
# `replace` to ./staging, so `go install k8s.io/kubernetes/cmd/...@vX` is refused. We build inside a
# throw-away module whose `replace` lines point each staging module at its published v0.X.Y, and we
# derive that list from the real go.mod of the pinned release, never by hand.
#
# Idempotent: a component whose binary and stamp exist is skipped, so a second run builds nothing.
# Prints where the binaries are on its last line (`bin dir: ...`).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.1}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
KINE_VERSION=${KINE_VERSION:-v0.17.5}
HELM_VERSION=${HELM_VERSION:-v3.22.0}

CACHE_ROOT=${VCLUSTER_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vcluster-py}
BIN="$CACHE_ROOT/bin"
WORK="$CACHE_ROOT/work"
COMPONENTS=${*:-kubernetes etcd kine kwok helm}

die() { echo "build-k8s: $*" >&2; exit 1; }
log() { echo "build-k8s: $*" >&2; }

command -v go >/dev/null 2>&1 || die "Go is not installed (need go >= 1.26 on PATH): Kubernetes $KUBE_VERSION is built from Go modules."
gov=$(go env GOVERSION | sed 's/^go//')
case "$gov" in
  1.2[6-9]*|1.[3-9]*) ;;
  *) die "Go $gov is too old: Kubernetes $KUBE_VERSION needs go >= 1.26.0" ;;
esac

export GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$BIN" "$WORK"

# stamp NAME VERSION: a component is done when its stamp names the version we want.
done_already() { [ -f "$BIN/.$1.stamp" ] && [ "$(cat "$BIN/.$1.stamp")" = "$2" ]; }
stamp() { echo "$2" > "$BIN/.$1.stamp"; }
timed() { local t0=$SECONDS; "$@"; log "$1 took $((SECONDS - t0)) s"; }

build_kubernetes() {
  local name=kubernetes
  if done_already $name "$KUBE_VERSION"; then log "$name $KUBE_VERSION cached"; return; fi
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local staging=v0.${KUBE_VERSION#v1.}
  local mod="$WORK/k8s-$KUBE_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"; cd "$mod"
  cat > go.mod <<MOD
module vcluster-py.invalid/k8sbins

go 1.26.0
MOD
  log "resolving k8s.io/kubernetes@$KUBE_VERSION"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') \
    || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
  local staged
  staged=$(grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}')
  [ -n "$staged" ] || die "found no staging replace lines in $gomod"
  log "pinning $(echo "$staged" | wc -l) staging modules at $staging"
  for m in $staged; do go mod edit -replace="$m=$m@$staging"; done
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  local pkgs=""; for c in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  # shellcheck disable=SC2086
  go get $(for p in $pkgs; do echo "$p@$KUBE_VERSION"; done) || die "go get of the Kubernetes commands failed"
  local ldf="-s -w" date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  for c in $cmds; do
    log "building $c $KUBE_VERSION (kube-apiserver alone takes ~7 min cold on 2 cores)"
    CGO_ENABLED=0 go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldf" \
      -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" || die "go build of $c failed (see the output above)"
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
  "$BIN/kube-apiserver" --version | grep -q "$KUBE_VERSION" || die "kube-apiserver does not report $KUBE_VERSION"
  stamp $name "$KUBE_VERSION"
}

build_etcd() {
  local name=etcd
  if done_already $name "$ETCD_VERSION"; then log "$name $ETCD_VERSION cached"; return; fi
  local mod="$WORK/etcd-$ETCD_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"; cd "$mod"
  printf 'module vcluster-py.invalid/etcdbin\n\ngo 1.26.0\n' > go.mod
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" || die "go get etcd server $ETCD_VERSION failed"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 \
    || die "go build of etcd failed"
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  stamp $name "$ETCD_VERSION"
}

go_install() {  # name version module-path [version-ldflag-var]
  local name=$1 version=$2 path=$3 ldvar=${4:-}
  local ldf="-s -w"; [ -n "$ldvar" ] && ldf="$ldf -X $ldvar=$version"
  if done_already "$name" "$version"; then log "$name $version cached"; return; fi
  local tmp="$WORK/gobin-$name"; rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldf" "$path@$version" \
    || die "go install $path@$version failed"
  mv "$tmp/$name" "$BIN/$name"
  stamp "$name" "$version"
}

# kwok exits with "no stages found" without stage documents; they ship in its own module, so copy
# the ones we use next to the binary (the Python side reads them from there).
kwok_stages() {
  local dest="$BIN/kwok-stages-$KWOK_VERSION"
  [ -f "$dest/.done" ] && return
  local dir
  dir=$(cd "$WORK" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || die "could not download kwok $KWOK_VERSION sources for its stages"
  mkdir -p "$dest"
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
           pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$dir/kustomize/stage/$f" "$dest/" || die "kwok stage $f missing in kwok $KWOK_VERSION"
  done
  chmod -R u+w "$dest"; touch "$dest/.done"
}

build_one() {
  case "$1" in
    kubernetes) timed build_kubernetes ;;
    etcd) timed build_etcd ;;
    kine) timed go_install kine "$KINE_VERSION" github.com/k3s-io/kine github.com/k3s-io/kine/pkg/version.Version ;;
    kwok) timed go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok; kwok_stages ;;
    helm) timed go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm helm.sh/helm/v3/internal/version.version ;;
    *) die "unknown component '$1' (valid: kubernetes etcd kine kwok helm)" ;;
  esac
}

# The Kubernetes build is the long one (~15 min cold on 2 cores) and spends much of its time in
# single-threaded steps and downloads: build it in the background while the others build, which
# brought the cold total from ~26 to ~15 minutes here.
k8s_pid=""
rest=""
for c in $COMPONENTS; do
  if [ "$c" = kubernetes ] && [ "$COMPONENTS" != kubernetes ]; then
    (build_one kubernetes) & k8s_pid=$!
  else
    rest="$rest $c"
  fi
done
for c in $rest; do (build_one "$c") || exit 1; done
if [ -n "$k8s_pid" ]; then wait "$k8s_pid" || die "the Kubernetes build failed (see its output above)"; fi
echo "bin dir: $BIN"
