// ONNX Runtime's own per-node times, for comparing layer by layer with `d3-run --profile`.
// Usage: node tools/ort/ort_profile.js MODEL.onnx INPUT.bin [RUNS] [THREADS]
//   INPUT.bin: raw little-endian float32 in the model input's NCHW shape (tools/export_models.py
//   writes NAME.input.bin). RUNS timed runs (default 10) after one warm-up, THREADS intra-op
//   threads (default 1). Prints one line per node: its name, its operator (ORT's fused one, e.g.
//   FusedConv, Conv with its NCHWc layout) and the median of its kernel times in ms, tab-separated,
//   in execution order. Profiling files go to a fresh temporary directory, removed at the end.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

class UsageError extends Error {}
function fail(message) {
  throw new UsageError(message);
}
// A reader that stops early (| head) closes the pipe: not an error of this script.
process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1));

async function main() {
  const [model, inputPath, runsText = '10', threadsText = '1'] = process.argv.slice(2);
  if (!model || !inputPath) fail('usage: node ort_profile.js MODEL.onnx INPUT.bin [RUNS] [THREADS]');
  const runs = Number(runsText), threads = Number(threadsText);
  if (!(runs >= 1) || !(threads >= 1)) fail(`RUNS and THREADS must be >= 1, got ${runsText} and ${threadsText}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ort-profile-'));
  try {
    let session;
    try {
      session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
        graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: path.join(dir, 'p'),
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
    } catch (e) {
      fail(`cannot load '${model}': ${e.message}`);
    }
    let bytes;
    try {
      bytes = fs.readFileSync(inputPath);
    } catch (e) {
      fail(`cannot read '${inputPath}': ${e.message}`);
    }
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const meta = session.inputMetadata && session.inputMetadata[0];
    let dims = meta && meta.shape ? meta.shape.map((d) => (typeof d === 'number' ? d : 1)) : null;
    if (!dims || dims.reduce((a, b) => a * b, 1) !== data.length) dims = [1, 3, 224, 224];
    if (dims.reduce((a, b) => a * b, 1) !== data.length) fail(`'${inputPath}' holds ${data.length} floats`);
    const input = new ort.Tensor('float32', data, dims);
    for (let i = 0; i <= runs; ++i) await session.run({ [session.inputNames[0]]: input });
    session.endProfiling();
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) fail('ONNX Runtime wrote no profile');
    const per = new Map();
    for (const e of JSON.parse(fs.readFileSync(path.join(dir, file)))) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const name = e.name.slice(0, -'_kernel_time'.length);
      if (!per.has(name)) per.set(name, { op: e.args.op_name, times: [] });
      per.get(name).times.push(e.dur / 1000);
    }
    for (const [name, { op, times }] of per) {
      const timed = times.slice(1).sort((a, b) => a - b);  // the first run is the warm-up
      const median = timed.length ? timed[Math.floor(timed.length / 2)] : times[0];
      process.stdout.write(`${name}\t${op}\t${median.toFixed(3)}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => {
  process.stderr.write(`ort_profile: ${e.message}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
