"""Streamed output as MCP progress notifications, and cancellation, with the official Python SDK.

usage: progress.py MSBW_BINARY MARKER

A run that prints `a`, sleeps 2 s and prints `b`: a progress notification carrying `a` arrives
while the call is still running, and the result has both lines. Then a run sleeping with
`sleep MARKER` is cancelled (the SDK sends notifications/cancelled when the awaiting task is
cancelled): the host's sleep ends, and the same session answers the next call at once.
Prints one JSON line with what it saw; exits non-zero on the first failed check.
"""

import json
import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from common import check, run_then_cancel, sleepers


async def scenario(session, marker):
    seen = {}
    await session.initialize()
    r = await session.call_tool("execute_code", {"code": "1"})
    sid = r.structured_content["session_id"]

    # Output arrives as progress while the call runs.
    messages = []
    got_a = anyio.Event()
    done = anyio.Event()
    result = {}

    async def on_progress(p, total, message):
        messages.append((p, total, message))
        if message and "a" in message.split():
            got_a.set()

    code = "print('a', flush=True)\nimport time\ntime.sleep(2)\nprint('b')"
    async with anyio.create_task_group() as tg:

        async def run():
            result["r"] = await session.call_tool(
                "execute_code", {"code": code, "session_id": sid}, progress_callback=on_progress
            )
            done.set()

        tg.start_soon(run)
        with anyio.fail_after(60):
            await got_a.wait()
        seen["a_before_result"] = not done.is_set()
    r = result["r"]
    check(not r.is_error and r.structured_content["stdout"] == "a\nb", f"result: {r.structured_content}")
    values = [p for p, _, _ in messages]
    check(values == sorted(set(values)), f"progress increases: {messages}")
    check(messages[0][2] == "started" and messages[-1][2] == "finished", f"first and last: {messages}")
    check(messages[-1][0] == messages[-1][1], f"the last has progress == total: {messages}")
    seen["chunks"] = [m for _, _, m in messages[1:-1]]

    # Cancel: the run ends on the host, the session answers the next call promptly.
    await run_then_cancel(session, sid, marker)
    t0 = time.monotonic()
    with anyio.fail_after(20):
        r = await session.call_tool("execute_code", {"code": "print('next')", "session_id": sid})
    seen["next_seconds"] = round(time.monotonic() - t0, 2)
    check(r.structured_content["stdout"] == "next", f"usable after cancel: {r.structured_content}")
    check(r.structured_content["session_created"] is False, f"the same session: {r.structured_content}")
    check(not sleepers(marker), "the cancelled sleep ended before the next call ran")
    r = await session.call_tool("get_sessions", {"session_id": sid})
    check(r.structured_content["sessions"][0]["status"] == "ready", f"ready: {r.structured_content}")
    r = await session.call_tool("execute_command", {"command": "sh", "args": ["-c", "echo c; sleep 0.2; echo d"], "session_id": sid})
    check(r.structured_content["stdout"] == "c\nd", f"a command after cancel: {r.structured_content}")
    seen["ok"] = True
    return seen


async def main():
    target, marker = sys.argv[1], sys.argv[2]
    params = StdioServerParameters(command=target, args=["mcp"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            seen = await scenario(session, marker)
    print(json.dumps(seen))


anyio.run(main)
