// ONNX Runtime as a long-lived child of d3-bench engine, so that ORT and d3 runs can alternate.
// Usage: node ort_runner.js MODEL.onnx THREADS INPUT.bin [SPINNING]
//   INPUT.bin: raw little-endian float32 in the model input's NCHW shape.
//   SPINNING: 1 keeps ORT's default spin-waiting intra-op workers; 0 (the bench's default) lets
//   them block when idle. Spinning workers keep a core busy long after a run (measured: still
//   slowing the other engine 500 ms later), so in alternating runs they would tax d3, not ORT.
// Protocol, one line per command on stdin, one JSON line per answer on stdout:
//   run            -> {"ms": <wall time of one session.run>}
//   output PATH    -> writes the last output as raw float32, answers {"written": PATH}
//   quit           -> exits
// Errors answer {"error": "..."} and exit 2 when the model cannot be loaded.
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + '\n');
  process.exit(2);
}

async function main() {
  const [model, threadsText, inputPath, spinning = '0'] = process.argv.slice(2);
  if (!model || !threadsText || !inputPath) fail('usage: node ort_runner.js MODEL.onnx THREADS INPUT.bin');
  const threads = Number(threadsText);
  let session;
  try {
    session = await ort.InferenceSession.create(model, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
      extra: { session: { intra_op: { allow_spinning: spinning === '1' ? '1' : '0' } } },
    });
  } catch (e) {
    fail(`cannot load '${model}': ${e.message}`);
  }
  const inputName = session.inputNames[0];
  const bytes = fs.readFileSync(inputPath);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const meta = session.inputMetadata && session.inputMetadata[0];
  let dims = meta && meta.shape ? meta.shape.map((d) => (typeof d === 'number' ? d : 1)) : null;
  if (!dims || dims.reduce((a, b) => a * b, 1) !== data.length) dims = [1, 3, 224, 224];
  const input = new ort.Tensor('float32', data, dims);
  let last = null;

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [command, argument] = line.trim().split(/\s+/, 2);
    try {
      if (command === 'run') {
        const start = process.hrtime.bigint();
        const out = await session.run({ [inputName]: input });
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        last = out[session.outputNames[0]];
        process.stdout.write(JSON.stringify({ ms }) + '\n');
      } else if (command === 'output') {
        if (!last) throw new Error('no output yet: send run first');
        fs.writeFileSync(argument, Buffer.from(last.data.buffer, last.data.byteOffset, last.data.byteLength));
        process.stdout.write(JSON.stringify({ written: argument }) + '\n');
      } else if (command === 'quit') {
        break;
      } else {
        throw new Error(`unknown command '${command}'`);
      }
    } catch (e) {
      process.stdout.write(JSON.stringify({ error: e.message }) + '\n');
    }
  }
  process.exit(0);
}

main();
