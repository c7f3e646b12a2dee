#!/bin/bash
# docs/metrics.md must list exactly what shoald exports: its table is the
# output of `shoald --list-metrics`, generated from the one declaration.
set -euo pipefail
doc=$(dirname "$0")/../docs/metrics.md
want=$("$SHOALD" --list-metrics)
have=$(sed -n '/<!-- metrics:begin/,/<!-- metrics:end/p' "$doc" | sed '1d;$d')
if [[ $want == "$have" ]]; then
	echo "docs/metrics.md matches shoald --list-metrics ($(wc -l <<<"$want") lines)"
else
	echo "docs/metrics.md is stale; regenerate its table with shoald --list-metrics:" >&2
	diff <(echo "$have") <(echo "$want") >&2 || true
	exit 1
fi
