"""Drives msbw serve with the upstream microsandbox Python SDK 0.1.8, unmodified.

Reads MSB_SERVER_URL (and MSB_API_KEY when set), as the SDK does. Exits non-zero on the first
failed expectation, printing what was expected and what came back.
"""
import asyncio
import sys

from microsandbox import NodeSandbox, PythonSandbox


def expect(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def state_persists(sb, define, use, what):
    """Runs `define`, then `use`, which must print 42; returns the second execution."""
    await sb.run(define)
    ex = await sb.run(use)
    out = await ex.output()
    expect(out.strip() == "42", f"{what}: got {out!r}")
    return ex


async def python_sandbox():
    async with PythonSandbox.create(name="sdk-python") as sb:
        ex = await state_persists(sb, "x = 41", "print(x + 1)", "state persists across run calls")
        expect(not ex.has_error(), "print(x + 1) has no error")
        bad = await sb.run("1/0")
        expect(bad.has_error(), "an exception is reported as an error")
        expect("ZeroDivisionError" in await bad.error(), "the traceback names the exception")
        cmd = await sb.command.run("sh", ["-c", "echo hi; exit 3"])
        expect(cmd.exit_code == 3, f"exit code 3: got {cmd.exit_code}")
        expect(not cmd.success, "a non-zero exit is not a success")
        expect((await cmd.output()).strip() == "hi", "command stdout")
        ok = await sb.command.run("echo", ["fine"])
        expect(ok.exit_code == 0 and ok.success, "echo succeeds")
        metrics = await sb.metrics.all()
        expect(metrics.get("name") == "sdk-python", f"metrics name: {metrics}")
        expect(metrics.get("running") is True, f"metrics running: {metrics}")
        expect(await sb.metrics.is_running(), "is_running")
        expect(isinstance(await sb.metrics.memory(), (int, type(None))), "memory is a number or null")


async def node_sandbox():
    async with NodeSandbox.create(name="sdk-node") as sb:
        await state_persists(sb, "var y = 41;", "console.log(y + 1)", "node state persists")
        cmd = await sb.command.run("sh", ["-c", "exit 2"])
        expect(cmd.exit_code == 2 and not cmd.success, f"node sandbox command exit 2: got {cmd.exit_code}")
        metrics = await sb.metrics.all()
        expect(metrics.get("running") is True, f"node metrics: {metrics}")


async def main():
    await python_sandbox()
    await node_sandbox()
    print("SDK OK")


asyncio.run(main())
