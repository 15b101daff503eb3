"""Drives `msbw mcp` with the official MCP Python SDK (PyPI `mcp`), as an agent would.

usage: client.py stdio MSBW_BINARY MARKER
       client.py http URL MARKER [TOKEN]

The server must run with MSB_MAX_SESSIONS=1. MARKER is a unique number of seconds: the long
run sleeps with `sleep MARKER`, so the host process table shows whether it is still running.
Prints one JSON line with what it saw; exits non-zero on the first failed check.
"""

import json
import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from common import check, error_of, run_then_cancel, sleepers

TOOLS = {"execute_code", "execute_command", "get_sessions", "stop_session", "get_volume_mappings", "get_resource_stats"}


async def scenario(session, marker):
    seen = {}
    init = await session.initialize()
    seen["protocol"] = str(getattr(init, "protocol_version", ""))
    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    check(TOOLS <= names, f"tools listed: {names}")
    for t in tools:
        check(t.description and len(t.description) > 40, f"{t.name} has a description")
        check(t.output_schema is not None, f"{t.name} has an output schema")

    # State persists within a session.
    r = await session.call_tool("execute_code", {"code": "x = 41"})
    check(not r.is_error, f"first run: {r}")
    sid = r.structured_content["session_id"]
    check(r.structured_content["session_created"] is True, "first run created the session")
    r = await session.call_tool("execute_code", {"code": "print(x + 1)", "session_id": sid})
    check(r.structured_content["stdout"] == "42", f"state persists: {r.structured_content}")
    check(r.structured_content["session_created"] is False, "second run reused the session")
    check("42" in r.content[0].text, "readable text carries stdout")
    seen["session_id"] = sid

    # Code that raised is a result with isError.
    r = await session.call_tool("execute_code", {"code": "raise ValueError('boom')", "session_id": sid})
    check(r.is_error is True, "a raised exception is isError")
    check("ValueError" in r.structured_content["stderr"], "the traceback is in stderr")
    r = await session.call_tool("execute_command", {"command": "sh", "args": ["-c", "echo hi; exit 3"], "session_id": sid})
    check(r.is_error is True and r.structured_content["exit_code"] == 3, f"a failed command: {r.structured_content}")
    check(r.structured_content["stdout"] == "hi", "command stdout")

    # Bad arguments: an error with the wrapper's code.
    err = await error_of(session, "execute_code", {"code": "1", "timeout": 9999})
    check(err.code == -32602 and err.data["code"] == "INVALID_INPUT_ERROR", f"bad timeout: {err}")

    # Progress: start and finish notifications for a client that sent a token.
    progress = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    r = await session.call_tool("execute_code", {"code": "print('p')", "session_id": sid}, progress_callback=on_progress)
    check(not r.is_error, "run with progress")
    check(len(progress) >= 2 and progress[0][2] == "started" and progress[-1][2] == "finished", f"progress: {progress}")
    seen["progress"] = len(progress)

    # The session limit (MSB_MAX_SESSIONS=1): a second session is refused.
    err = await error_of(session, "execute_code", {"code": "1"})
    check(err.code == -32600 and err.data["code"] == "RESOURCE_LIMIT_ERROR", f"limit: {err}")
    check(any("MSB_MAX_SESSIONS" in s for s in err.data["suggestions"]), "limit suggestions")

    # Cancel a long run: the sleep ends on the host, the session id stays usable.
    t0 = time.monotonic()
    await run_then_cancel(session, sid, marker)
    with anyio.fail_after(30):
        while sleepers(marker):
            await anyio.sleep(0.05)
    seen["cancel_seconds"] = round(time.monotonic() - t0, 2)
    # The client does not wait for the cancelled call's answer; the server drops the run and
    # keeps the session, which says its last execution was cancelled (polled, with a deadline).
    with anyio.fail_after(30):
        while True:
            r = await session.call_tool("get_sessions", {"session_id": sid})
            s = r.structured_content["sessions"][0]
            if s["last_execution_cancelled"] and s["status"] != "running":
                break
            await anyio.sleep(0.05)
    r = await session.call_tool("execute_code", {"code": "print('after cancel')", "session_id": sid})
    check(r.structured_content["stdout"] == "after cancel", f"usable after cancel: {r.structured_content}")
    check(r.structured_content["session_created"] is False, f"same session after cancel: {r.structured_content}")
    seen["kept_after_cancel"] = True

    # Sessions, stop, unknown session.
    r = await session.call_tool("get_sessions", {})
    ids = [s["session_id"] for s in r.structured_content["sessions"]]
    check(ids == [sid], f"sessions: {ids}")
    r = await session.call_tool("get_resource_stats", {})
    check(r.structured_content["active_sessions"] == 1, f"stats: {r.structured_content}")
    r = await session.call_tool("get_volume_mappings", {})
    check(r.structured_content["volumes"] == [], "no volumes")
    r = await session.call_tool("stop_session", {"session_id": sid})
    check(r.structured_content["stopped"] is True, "stopped")
    err = await error_of(session, "stop_session", {"session_id": sid})
    check(err.code == -32602 and err.data["code"] == "SESSION_NOT_FOUND_ERROR", f"unknown session: {err}")
    r = await session.call_tool("get_sessions", {})
    check(r.structured_content["sessions"] == [], "no session left")

    # A session left running for the server's shutdown to stop.
    left = marker + "1"
    code = f"import subprocess\np = subprocess.Popen(['sleep', '{left}'])"
    r = await session.call_tool("execute_code", {"code": code, "session_id": "left-running"})
    check(not r.is_error, f"left running: {r.structured_content}")
    with anyio.fail_after(10):
        while not sleepers(left):
            await anyio.sleep(0.05)
    return seen


async def main():
    mode, target, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "stdio":
        env = {k: v for k, v in os.environ.items()}
        params = StdioServerParameters(command=target, args=["mcp"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await scenario(session, marker)
    else:
        import httpx2

        headers = {"Authorization": f"Bearer {sys.argv[4]}"} if len(sys.argv) > 4 else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120)) as client:
            async with streamable_http_client(target, http_client=client) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    seen = await scenario(session, marker)
    print(json.dumps(seen))


anyio.run(main)
