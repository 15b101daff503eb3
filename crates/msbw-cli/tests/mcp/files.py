"""Drives the file tools of `msbw mcp` over stdio with the official MCP Python SDK (PyPI `mcp`).

usage: files.py MSBW_BINARY

Writes a text and a binary file, reads them back, lists the folder, sees the file from code,
and checks the errors' codes. Prints one JSON line with what it saw; exits non-zero on the
first failed check.
"""

import base64
import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from common import check, error_of


async def scenario(session):
    seen = {}
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    for name in ("write_file", "read_file", "list_files"):
        check(name in tools, f"{name} is listed: {sorted(tools)}")
        check(len(tools[name].description) > 40, f"{name} has a description")
        check(tools[name].output_schema is not None, f"{name} has an output schema")

    # Writing into no session creates one; the code of that session sees the file.
    r = await session.call_tool("write_file", {"path": "/tmp/in/hello.txt", "content": "hello, sandbox\n"})
    check(not r.is_error, f"write_file: {r}")
    sid = r.structured_content["session_id"]
    check(r.structured_content["session_created"] is True, "the write created the session")
    check(r.structured_content["bytes"] == 15, f"bytes: {r.structured_content}")
    r = await session.call_tool("execute_code", {"code": "print(open('/tmp/in/hello.txt').read().upper())", "session_id": sid})
    check(r.structured_content["stdout"] == "HELLO, SANDBOX", f"code sees the file: {r.structured_content}")

    # Binary content round trips as base64.
    blob = bytes(range(256)) * 4
    r = await session.call_tool(
        "write_file",
        {"session_id": sid, "path": "/tmp/in/blob.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
    )
    check(not r.is_error and r.structured_content["session_created"] is False, f"binary write: {r}")
    r = await session.call_tool("read_file", {"session_id": sid, "path": "/tmp/in/blob.bin"})
    check(r.structured_content["encoding"] == "base64", f"non-UTF-8 comes back base64: {r.structured_content}")
    check(base64.b64decode(r.structured_content["content"]) == blob, "binary content round trips")

    # Code writes, the agent reads.
    await session.call_tool("execute_code", {"code": "open('/tmp/in/out.json', 'w').write('{\"answer\": 42}')", "session_id": sid})
    r = await session.call_tool("read_file", {"session_id": sid, "path": "/tmp/in/out.json"})
    check(r.structured_content["content"] == '{"answer": 42}', f"read_file: {r.structured_content}")
    check(r.structured_content["encoding"] == "utf8", "text comes back as text")
    check('{"answer": 42}' in r.content[0].text, "readable text carries the content")

    r = await session.call_tool("list_files", {"session_id": sid, "path": "/tmp/in"})
    entries = {e["name"]: e for e in r.structured_content["entries"]}
    check(sorted(entries) == ["blob.bin", "hello.txt", "out.json"], f"listing: {entries}")
    check(entries["blob.bin"]["size"] == 1024 and entries["blob.bin"]["kind"] == "file", f"entry: {entries}")

    # Errors carry the wrapper's codes.
    e = await error_of(session, "read_file", {"session_id": sid, "path": "/tmp/in/missing.txt"})
    check(e.data["code"] == "FILE_NOT_FOUND_ERROR", f"missing file: {e}")
    e = await error_of(session, "read_file", {"session_id": sid, "path": "../../etc/passwd"})
    check(e.data["code"] == "INVALID_PATH_ERROR", f"dot-dot: {e}")
    e = await error_of(session, "read_file", {"session_id": sid, "path": "/tmp/in"})
    check(e.data["code"] == "FILE_TYPE_ERROR", f"a folder: {e}")
    e = await error_of(session, "write_file", {"session_id": sid, "path": "/etc/x", "content": "x"})
    check(e.data["code"] == "FILE_PERMISSION_ERROR", f"read-only /etc: {e}")
    e = await error_of(session, "read_file", {"session_id": "nobody", "path": "/tmp/x"})
    check(e.data["code"] == "SESSION_NOT_FOUND_ERROR", f"unknown session: {e}")
    e = await error_of(session, "write_file", {"session_id": sid, "path": "/tmp/x", "content": "%%%", "encoding": "base64"})
    check(e.data["code"] == "INVALID_INPUT_ERROR", f"bad base64: {e}")
    seen["ok"] = True
    return seen


async def main():
    env = dict(os.environ)
    params = StdioServerParameters(command=sys.argv[1], args=["mcp"], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            seen = await scenario(session)
    print(json.dumps(seen))


anyio.run(main)
