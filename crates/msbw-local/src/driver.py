# The Python driver of msbw-local: a persistent REPL behind the driver protocol.
#
# Runs as `python3 -c <this file>` inside the sandbox. Descriptor 3 is a Unix socket to the
# backend. Each request is a frame (4-byte big-endian length, then JSON) carrying two pipe
# descriptors (SCM_RIGHTS) that become descriptors 1 and 2 while the code runs, so output of
# child processes is captured too and nothing written later lands in another execution.
# After the code has finished and its output is flushed, the driver answers with a result frame.


def _msbw_driver():
    import array
    import ast
    import asyncio
    import builtins
    import inspect
    import json
    import linecache
    import os
    import platform
    import socket
    import struct
    import sys
    import traceback
    import types

    control = socket.socket(fileno=3)
    control.set_inheritable(False)
    base_out = os.dup(1)
    base_err = os.dup(2)
    cloexec = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
    fd_space = socket.CMSG_SPACE(8 * array.array("i").itemsize)
    top_level_await = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)

    # The user's code runs in a fresh __main__, not in this driver's globals.
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    namespace = main.__dict__
    sys.argv = [""]
    state = {"loop": None}
    # Printed lines reach the backend (and a streaming caller) as they end, not when a block fills.
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass

    def send(message):
        body = json.dumps(message).encode("utf-8")
        control.sendall(struct.pack(">I", len(body)) + body)

    def receive_exact(size, descriptors):
        data = bytearray()
        while len(data) < size:
            if descriptors is not None and not data:
                chunk, ancillary, _flags, _addr = control.recvmsg(size, fd_space, cloexec)
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds = array.array("i")
                        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                        descriptors.extend(fds)
            else:
                chunk = control.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def receive():
        descriptors = []
        header = receive_exact(4, descriptors)
        if header is None:
            return None, descriptors
        (length,) = struct.unpack(">I", header)
        body = receive_exact(length, None)
        if body is None:
            return None, descriptors
        return json.loads(body.decode("utf-8")), descriptors

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass

    def write_error(text):
        flush()
        data = text.encode("utf-8", "replace")
        while data:
            try:
                written = os.write(2, data)
            except OSError:
                return
            data = data[written:]

    def report(error):
        tb = error.__traceback__
        # Leave out the driver's own frames.
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
            tb = tb.tb_next
        write_error("".join(traceback.format_exception(type(error), error, tb)))

    def event_loop():
        loop = state["loop"]
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            state["loop"] = loop
        asyncio.set_event_loop(loop)
        return loop

    def execute(code, cell):
        filename = "<cell-%d>" % cell
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST | top_level_await, dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError, MemoryError) as error:
            report(error)
            return "raised"
        # Like an interactive interpreter, show the value of a final expression.
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Interactive(body=[tree.body.pop()])
        try:
            for node, mode in ((tree, "exec"), (last, "single")):
                if node is None:
                    continue
                compiled = compile(node, filename, mode, top_level_await, dont_inherit=True)
                result = eval(compiled, namespace)
                if compiled.co_flags & inspect.CO_COROUTINE:
                    event_loop().run_until_complete(result)
        except SystemExit as error:
            if error.code is None or error.code == 0:
                return "ok"
            report(error)
            return "raised"
        except BaseException as error:
            report(error)
            return "raised"
        return "ok"

    def run(code, descriptors, cell):
        for extra in descriptors[2:]:
            os.close(extra)
        flush()
        if len(descriptors) >= 2:
            os.dup2(descriptors[0], 1)
            os.dup2(descriptors[1], 2)
            os.close(descriptors[0])
            os.close(descriptors[1])
        try:
            return execute(code, cell)
        finally:
            flush()
            os.dup2(base_out, 1)
            os.dup2(base_err, 2)

    send({"type": "ready", "language": "python", "version": platform.python_version()})
    cell = 0
    while True:
        try:
            message, descriptors = receive()
        except (OSError, ValueError):
            return
        if message is None:
            return
        if message.get("type") != "exec":
            for fd in descriptors:
                os.close(fd)
            continue
        cell += 1
        status = run(message.get("code", ""), descriptors, cell)
        try:
            send({"type": "result", "id": message.get("id"), "nonce": message.get("nonce"), "status": status})
        except OSError:
            return


_msbw_driver()
