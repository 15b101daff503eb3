"""What the MCP client scripts share: failing a check, and the error of a call that must fail."""

import os
import sys

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
