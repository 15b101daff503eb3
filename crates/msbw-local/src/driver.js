// The Node.js driver of msbw-local: a persistent REPL behind the driver protocol.
//
// Runs as `node --expose-internals -e <this file>` inside the sandbox. Descriptor 3 is a Unix
// socket to the backend; requests and results are frames (4-byte big-endian length, then JSON).
// Code runs in the main context, like the `node` REPL, so `var`, `let` and `const` at the top
// level persist across executions. Node cannot swap its descriptors 1 and 2 per execution, so
// writes are tagged with the execution they come from (AsyncLocalStorage) and writes of an
// execution that has already finished are dropped.
'use strict';
(function msbwDriver() {
  const net = require('net');
  const vm = require('vm');
  const util = require('util');
  const path = require('path');
  const { AsyncLocalStorage } = require('async_hooks');
  const { createRequire } = require('module');

  // Node's own REPL turns top-level `await` into an async function that keeps declarations.
  let processTopLevelAwait = null;
  try {
    ({ processTopLevelAwait } = require('internal/repl/await'));
  } catch (_) {
    processTopLevelAwait = null;
  }

  // The user's code shares this realm: keep our own references to what we use.
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const concat = Buffer.concat;
  const alloc = Buffer.alloc;
  const from = Buffer.from;
  const inspect = util.inspect;
  const setImmediateRef = setImmediate;
  const exit = process.exit.bind(process);

  const executions = new AsyncLocalStorage();
  let active = 0;
  let raised = false;

  function current() {
    const owner = executions.getStore();
    return active !== 0 && (owner === undefined || owner === active);
  }

  // Resolves once everything written to the stream so far is in the pipe: stdout and stderr
  // are asynchronous pipes, so a write may still be queued when the code has finished.
  const flushes = [];
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    flushes.push(
      () =>
        new Promise((resolve) => {
          if (stream.writableLength === 0 || stream.destroyed) {
            resolve();
            return;
          }
          // Callbacks run in order: this one runs after every earlier write is done (or failed).
          write('', () => resolve());
        }),
    );
    stream.write = function gatedWrite(chunk, encoding, callback) {
      if (current()) {
        return write(chunk, encoding, callback);
      }
      const done = typeof encoding === 'function' ? encoding : callback;
      if (typeof done === 'function') {
        process.nextTick(done);
      }
      return true;
    };
  }
  const writeOut = (text) => process.stdout.write(text);
  const writeErr = (text) => process.stderr.write(text);

  globalThis.require = createRequire(path.join(process.cwd(), '[repl]'));
  globalThis.module = { exports: {}, id: '[repl]' };
  globalThis.exports = globalThis.module.exports;
  globalThis.__dirname = process.cwd();
  globalThis.__filename = path.join(process.cwd(), '[repl]');

  function describe(error) {
    if (error !== null && typeof error === 'object' && typeof error.stack === 'string') {
      // Leave out the driver's frames.
      const lines = error.stack.split('\n');
      const cut = lines.findIndex((l) => /\(node:vm|\[eval\]|at Script\.runInThisContext/.test(l));
      return (cut > 0 ? lines.slice(0, cut) : lines).join('\n');
    }
    return 'Uncaught ' + inspect(error);
  }

  function report(error, prefix) {
    raised = true;
    writeErr((prefix || '') + describe(error) + '\n');
  }

  process.on('uncaughtException', (error) => {
    if (current()) {
      report(error);
    }
  });
  process.on('unhandledRejection', (reason) => {
    if (current()) {
      report(reason, 'Uncaught (in promise) ');
    }
  });

  function compile(code, id) {
    const filename = `cell-${id}`;
    if (processTopLevelAwait !== null && /\bawait\b/.test(code)) {
      let wrapped = null;
      try {
        wrapped = processTopLevelAwait(code);
      } catch (_) {
        wrapped = null;
      }
      if (wrapped !== null) {
        return { script: new vm.Script(wrapped, { filename }), wrapped: true };
      }
    }
    try {
      return { script: new vm.Script(code, { filename }), wrapped: false };
    } catch (error) {
      if (processTopLevelAwait === null && error instanceof SyntaxError && /\bawait\b/.test(code)) {
        // Without Node's helper, run it as an async function (its declarations stay local).
        const script = new vm.Script(`(async () => {\n${code}\n})()`, { filename });
        return { script, wrapped: false };
      }
      throw error;
    }
  }

  async function run(id, code) {
    try {
      const { script, wrapped } = compile(code, id);
      let value = script.runInThisContext({ displayErrors: true });
      if (wrapped) {
        const settled = await value;
        value = settled === undefined || settled === null ? undefined : settled.value;
      }
      if (value !== undefined) {
        writeOut(inspect(value) + '\n');
      }
    } catch (error) {
      report(error);
    }
    // Let rejections that nothing handled come to light before answering.
    await new Promise((resolve) => setImmediateRef(resolve));
    await new Promise((resolve) => setImmediateRef(resolve));
  }

  async function execute(id, code) {
    active = id;
    raised = false;
    try {
      await executions.run(id, () => run(id, code));
    } finally {
      active = 0;
    }
    // Only then answer, so that the backend has all the output when it reads the result.
    await Promise.all(flushes.map((flush) => flush()));
    return raised ? 'raised' : 'ok';
  }

  const control = new net.Socket({ fd: 3, readable: true, writable: true });
  function send(message) {
    const body = from(stringify(message), 'utf8');
    const header = alloc(4);
    header.writeUInt32BE(body.length, 0);
    control.write(concat([header, body]));
  }

  let pending = alloc(0);
  let queue = Promise.resolve();
  control.on('data', (chunk) => {
    pending = concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0);
      if (pending.length < 4 + length) {
        break;
      }
      const message = parse(pending.subarray(4, 4 + length).toString('utf8'));
      pending = pending.subarray(4 + length);
      if (message.type === 'exec') {
        queue = queue
          .then(() => execute(message.id, String(message.code)))
          .then((status) => send({ type: 'result', id: message.id, nonce: message.nonce, status }));
      }
    }
  });
  control.on('end', () => exit(0));
  control.on('error', () => exit(1));
  send({ type: 'ready', language: 'node', version: process.version });
})();
