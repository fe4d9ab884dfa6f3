#!/usr/bin/env bash
# Create the Secrets the manifests reference, with fresh random values, in a namespace (default visiong1).
# Secrets that already exist are kept: re-running never rotates a token or the database password under a
# running deployment. With --print, print the Secret manifests instead (no cluster needed; nothing is applied).
#
#   k8s/tools/make-secrets.sh [--print] [NAMESPACE]
set -euo pipefail

print_only=false
if [[ "${1:-}" == "--print" ]]; then print_only=true; shift; fi
namespace="${1:-visiong1}"

random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# secret NAME KEY=VALUE...: print or create one generic Secret.
secret() {
  local name="$1"; shift
  local manifest
  # Values go through a file descriptor, not the command line, so they never show in the process list.
  manifest="$(kubectl create secret generic "$name" --namespace "$namespace" \
    --from-env-file=<(printf '%s\n' "$@") --dry-run=client -o yaml)"
  if $print_only; then
    printf -- '---\n%s\n' "$manifest"
  elif kubectl get secret "$name" --namespace "$namespace" >/dev/null 2>&1; then
    echo "secret/$name exists in $namespace: kept" >&2
  else
    printf '%s\n' "$manifest" | kubectl create -f - >&2
  fi
}

# Ray's cluster token: KubeRay authOptions.secretName reads key auth_token.
secret visiong1-ray-token "auth_token=$(random_hex)"
# Bearer tokens of the REST API and of the reward service.
secret visiong1-api-token "token=$(random_hex)"
secret visiong1-reward-token "token=$(random_hex)"
# The run store: the password of the in-cluster PostgreSQL and the URL the coordinator and API connect with.
# For an external server, create this Secret yourself before running this script (key url; password unused).
store_password="$(random_hex)"
secret visiong1-store "password=$store_password" \
  "url=postgresql://visiong1:$store_password@visiong1-postgres:5432/visiong1"
