# The Python driver of msbw-local: a persistent REPL behind the driver protocol.
#
# Runs as `python3 -c <this file>` inside the sandbox. Descriptor 3 is a Unix socket to the
# backend. Each request is a frame (4-byte big-endian length, then JSON) carrying two pipe
# descriptors (SCM_RIGHTS) that become descriptors 1 and 2 while the code runs, so output of
# child processes is captured too and nothing written later lands in another execution.
# After the code has finished and its output is flushed, the driver answers with a result frame.
#
# Every interpreter start pays for what the driver imports, so it imports only built-in modules
# and what `site` has loaded anyway (os, sys): the C halves of socket and json instead of their
# Python modules (which pull in re and enum), asyncio only for code that awaits at top level,
# traceback only to report an error, and linecache (which pulls in tokenize and re) only once
# something imports it, when the cells' sources are filled in (see LinecacheFiller).


def _msbw_driver():
    import _ast
    import _socket
    import builtins
    import os
    import sys

    try:
        from _json import encode_basestring_ascii as quote, make_scanner
    except ImportError:  # another implementation than CPython: its json module
        quote = make_scanner = None

    control = _socket.socket(fileno=3)
    os.set_inheritable(3, False)
    base_out = os.dup(1)
    base_err = os.dup(2)
    cloexec = getattr(_socket, "MSG_CMSG_CLOEXEC", 0x40000000)
    fd_space = _socket.CMSG_SPACE(8 * 4)
    top_level_await = getattr(_ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    co_coroutine = 0x80  # inspect.CO_COROUTINE

    # The user's code runs in a fresh __main__, not in this driver's globals.
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    namespace = main.__dict__
    sys.argv = [""]
    state = {"loop": None}
    # The cells' linecache entries, kept until linecache is imported.
    cells = {}

    class LinecacheFiller:
        """A meta path finder that fills linecache with the cells when linecache is imported."""

        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "linecache" or "linecache" in sys.modules:
                return None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is LinecacheFiller or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None and spec.loader is not None:
                    spec.loader = FillingLoader(spec.loader)
                    return spec
            return None

    class FillingLoader:
        """Loads linecache with its own loader, then adds the cells to its cache."""

        def __init__(self, loader):
            self.loader = loader

        def create_module(self, spec):
            return self.loader.create_module(spec)

        def exec_module(self, module):
            self.loader.exec_module(module)
            module.cache.update(cells)
            cells.clear()

        def __getattr__(self, name):
            return getattr(self.loader, name)

    sys.meta_path.insert(0, LinecacheFiller)

    def remember(filename, code):
        entry = (len(code), None, code.splitlines(True), filename)
        linecache = sys.modules.get("linecache")
        cache = getattr(linecache, "cache", None)
        if isinstance(cache, dict):
            cache[filename] = entry
        else:
            cells[filename] = entry

    class Decoding:
        """The settings of json.loads, for the C scanner."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int

        @staticmethod
        def parse_constant(name):
            raise ValueError("not JSON: " + name)

    scan = make_scanner(Decoding) if make_scanner is not None else None

    def decode(text):
        if scan is None:
            import json

            return json.loads(text)
        try:
            value, end = scan(text, 0)
        except StopIteration:
            raise ValueError("not JSON") from None
        if end != len(text):
            raise ValueError("not JSON")
        return value

    def encode(message):
        # The driver's own messages: flat objects of strings, integers and null, as json.dumps
        # writes them (without its spaces); anything else goes to json.dumps.
        parts = []
        for key, value in message.items():
            if quote is None or type(key) is not str:
                parts = None
            elif value is None:
                text = "null"
            elif type(value) is int:
                text = int.__repr__(value)
            elif type(value) is str:
                text = quote(value)
            else:
                parts = None
            if parts is None:
                import json

                return json.dumps(message)
            parts.append(quote(key) + ":" + text)
        return "{" + ",".join(parts) + "}"

    # Printed lines reach the backend (and a streaming caller) as they end, not when a block fills.
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass

    def send(message):
        body = encode(message).encode("utf-8")
        control.sendall(len(body).to_bytes(4, "big") + body)

    def receive_exact(size, descriptors):
        data = bytearray()
        while len(data) < size:
            if descriptors is not None and not data:
                chunk, ancillary, _flags, _addr = control.recvmsg(size, fd_space, cloexec)
                for level, kind, payload in ancillary:
                    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                        for at in range(0, len(payload) - 3, 4):
                            descriptors.append(int.from_bytes(payload[at : at + 4], sys.byteorder, signed=True))
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
        length = int.from_bytes(header, "big")
        body = receive_exact(length, None)
        if body is None:
            return None, descriptors
        return decode(body.decode("utf-8")), descriptors

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
        import traceback

        tb = error.__traceback__
        # Leave out the driver's own frames.
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
            tb = tb.tb_next
        write_error("".join(traceback.format_exception(type(error), error, tb)))

    def event_loop():
        loop = state["loop"]
        import asyncio

        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            state["loop"] = loop
        asyncio.set_event_loop(loop)
        return loop

    def execute(code, cell):
        filename = "<cell-%d>" % cell
        remember(filename, code)
        try:
            tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST | top_level_await, dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError, MemoryError) as error:
            report(error)
            return "raised"
        # Like an interactive interpreter, show the value of a final expression.
        last = None
        if tree.body and isinstance(tree.body[-1], _ast.Expr):
            last = _ast.Interactive(body=[tree.body.pop()])
        try:
            for node, mode in ((tree, "exec"), (last, "single")):
                if node is None:
                    continue
                compiled = compile(node, filename, mode, top_level_await, dont_inherit=True)
                result = eval(compiled, namespace)
                if compiled.co_flags & co_coroutine:
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

    send({"type": "ready", "language": "python", "version": sys.version.split()[0]})
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
