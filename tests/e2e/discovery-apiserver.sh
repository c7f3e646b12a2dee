#!/usr/bin/env bash
# The stand-in Kubernetes API server (tests/k8s/apiserver.py) against the
# behaviour of a real one: tokens and Status objects, rising
# resourceVersions, paged lists, headers before events, lines split across
# chunks, bookmarks, the in-stream 410, label selectors. The discovery
# tests trust it, so it is tested first. Needs python3 and openssl only.
set -euo pipefail
cd "$(dirname "$0")/../k8s"
command -v python3 >/dev/null || { echo "[discovery-apiserver] SKIP: python3 is missing"; exit 77; }
command -v openssl >/dev/null || { echo "[discovery-apiserver] SKIP: openssl is missing"; exit 77; }
exec python3 test_apiserver.py
