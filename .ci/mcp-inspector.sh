#!/usr/bin/env bash
# The MCP Inspector's CLI (@modelcontextprotocol/inspector from npm, a client nobody on this
# project wrote) lists msbw mcp's tools over stdio and calls one: `.ci/mcp-inspector.sh MSBW`.
# The Inspector is installed on first use into $MSBW_INSPECTOR_DIR (~/.cache/msbw-inspector).
set -euo pipefail
msbw=${1:?usage: .ci/mcp-inspector.sh PATH-TO-MSBW}
version=2.12.0
dir=${MSBW_INSPECTOR_DIR:-$HOME/.cache/msbw-inspector}
inspector="$dir/node_modules/.bin/mcp-inspector"
if [ ! -x "$inspector" ] || ! grep -q "\"version\": \"$version\"" \
  "$dir/node_modules/@modelcontextprotocol/inspector/package.json" 2>/dev/null; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/inspector@$version" >/dev/null
fi
export MSB_BACKEND=local
tools=$(timeout 120 "$inspector" --cli "$msbw" mcp --method tools/list)
for tool in execute_code execute_command get_sessions stop_session get_volume_mappings \
  get_resource_stats write_file read_file list_files; do
  if ! grep -q "\"name\": \"$tool\"" <<<"$tools"; then
    echo "the Inspector's tools/list lacks $tool:" >&2
    echo "$tools" >&2
    exit 1
  fi
done
answer=$(timeout 120 "$inspector" --cli "$msbw" mcp --method tools/call \
  --tool-name execute_code --tool-arg 'code=print(6 * 7)' 2>/dev/null)
if ! grep -q '"stdout": "42"' <<<"$answer" || ! grep -q '"isError": false' <<<"$answer"; then
  echo "the Inspector's call of execute_code did not print 42:" >&2
  echo "$answer" >&2
  exit 1
fi
echo "MCP Inspector $version: listed every tool and ran execute_code (42)"
