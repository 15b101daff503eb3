"""What the MCP client scripts share: failing a check, and the error of a call that must fail."""

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
