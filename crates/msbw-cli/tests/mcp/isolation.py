"""Two MCP sessions on one `msbw mcp --http` server do not see each other's sandbox sessions.

usage: isolation.py URL
"""

import json
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def main():
    url = sys.argv[1]
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(120)) as ca, httpx2.AsyncClient(timeout=httpx2.Timeout(120)) as cb:
        async with streamable_http_client(url, http_client=ca) as sa, streamable_http_client(url, http_client=cb) as sb:
            async with ClientSession(sa[0], sa[1]) as a, ClientSession(sb[0], sb[1]) as b:
                await a.initialize()
                await b.initialize()
                r = await a.call_tool("execute_code", {"code": "secret = 1", "session_id": "same-name"})
                check(not r.is_error and r.structured_content["session_id"] == "same-name", f"a: {r}")
                r = await b.call_tool("get_sessions", {})
                check(r.structured_content["sessions"] == [], f"b sees a's sessions: {r.structured_content}")
                r = await b.call_tool("execute_code", {"code": "print('secret' in globals())", "session_id": "same-name"})
                check(r.structured_content["stdout"] == "False", f"b reached a's session: {r.structured_content}")
                check(r.structured_content["session_created"] is True, "b got a session of its own")
                r = await a.call_tool("execute_code", {"code": "print(secret)", "session_id": "same-name"})
                check(r.structured_content["stdout"] == "1", f"a's state: {r.structured_content}")
                r = await a.call_tool("get_sessions", {})
                check([s["session_id"] for s in r.structured_content["sessions"]] == ["same-name"], "a sees one")
    print(json.dumps({"ok": True}))


anyio.run(main)
