"""What the MCP client scripts share: failing a check, the error of a call that must fail, and a
cancelled run."""

import os
import sys

import anyio
from mcp.shared.exceptions import MCPError


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def error_of(session, name, args):
    try:
        await session.call_tool(name, args)
    except MCPError as e:
        return e.error
    check(False, f"{name}({args}) should have been an error")


def sleepers(marker):
    """Host pids whose command line is exactly `sleep MARKER`."""
    want = b"sleep\0" + marker.encode() + b"\0"
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(") ", 1)[-1].startswith("Z")
        except OSError:
            continue
        if cmdline == want and not zombie:
            found.append(int(pid))
    return found


async def run_then_cancel(session, sid, marker):
    """Runs `sleep MARKER` in session `sid` with progress asked for, waits until it started and
    runs on the host, then cancels the call (without waiting for its answer)."""
    started = anyio.Event()

    async def on_start(p, total, message):
        started.set()

    code = f"import subprocess\nsubprocess.run(['sleep', '{marker}'])\nprint('not cancelled')"
    async with anyio.create_task_group() as tg:

        async def long_run():
            await session.call_tool("execute_code", {"code": code, "session_id": sid, "timeout": 120}, progress_callback=on_start)

        tg.start_soon(long_run)
        with anyio.fail_after(60):
            await started.wait()
            while not sleepers(marker):
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
