#!/usr/bin/env node
// The ONNX Runtime side of bench/peers.sh and bench/busy.sh: npm's
// onnxruntime-node (its bundled CPU library), the models of bench/export_onnx.py.
//
//   node bench/ort_clip.js run --onnx DIR --workload vision|text-full [--batch N]
//        [--seconds S] [--warmup S] [--min-iters K] [--threads T] [--label NAME]
//        [--profile PREFIX]   also ONNX Runtime's profiler: the record adds
//        "ops", time per operator type over the timed calls (its JSON is PREFIX*.json)
//   node bench/ort_clip.js probe --file MODEL.onnx   load and run a model whose
//        inputs are all bfloat16 (or float32); one JSON line: ran, or the error
//   node bench/ort_clip.js check --dir DIR           export_onnx.py's check
//
// Options common to all: --ort-dir DIR (the folder holding
// node_modules/onnxruntime-node; default: Node's own module resolution).
//
// Session: CPU execution provider, intraOpNumThreads = --threads (default: the
// CPUs this process may run on), interOpNumThreads 1, executionMode
// 'sequential', graphOptimizationLevel 'all', everything else ONNX Runtime's
// default (its intra-op threads spin while waiting, as shipped).
// Timing follows bench_clip: one first call, --warmup s (default 1) of warm-up
// calls, then timed calls until --seconds s (default 3) and at least --min-iters
// calls (default 5); one JSON record like bench_clip's on stdout, median_s the
// median call.
// Inputs are bench_clip's: pixels x_i = LCG(i) / 2^31 * 4 - 2 (fill_pixels);
// text rows are the model's tokenizer on bench_clip's full captions, 77
// positions each, written by export_onnx.py to DIR/ids-full.bin (row r is the
// caption of r % 5).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

function parseArgs(argv) {
  const a = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s.startsWith('--')) {
      const k = s.slice(2);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) a[k] = true;
      else { a[k] = v; i++; }
    } else a._.push(s);
  }
  return a;
}

function die(msg, code = 1) {
  process.stderr.write(`ort_clip: ${msg}\n`);
  process.exit(code);
}

function loadOrt(dir) {
  try {
    return dir ? require(path.resolve(dir, 'node_modules', 'onnxruntime-node')) : require('onnxruntime-node');
  } catch (e) {
    die(`cannot load onnxruntime-node${dir ? ' from ' + dir : ''}: ${e.message}`);
  }
  return null;
}

function cpus() {
  // the CPUs of this process's affinity mask, as bench_clip counts them
  try {
    const s = fs.readFileSync('/proc/self/status', 'utf8').match(/^Cpus_allowed_list:\s*(.*)$/m);
    if (s) {
      let n = 0;
      for (const part of s[1].split(',')) {
        const [lo, hi] = part.split('-').map(Number);
        n += hi === undefined ? 1 : hi - lo + 1;
      }
      if (n > 0) return n;
    }
  } catch (e) { /* fall through */ }
  return os.cpus().length;
}

function machineBusyS() {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1, 9).map(Number);
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100; // USER_HZ
}
function selfCpuS() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
const now = () => Number(process.hrtime.bigint()) / 1e9;

function fillPixels(n) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // (i * 1103515245 + 12345) & 0x7FFFFFFF: only the low 31 bits matter
    const v = (Math.imul(i, 1103515245) + 12345) & 0x7FFFFFFF;
    out[i] = v / 2147483648.0 * 4.0 - 2.0;
  }
  return out;
}

function sessionOptions(threads) {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
}

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) >> 1] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function cmdRun(a, ort) {
  const wl = a.workload;
  if (wl !== 'vision' && wl !== 'text-full') die(`--workload must be vision or text-full, not ${wl}`, 2);
  if (!a.onnx) die('--onnx DIR is required', 2);
  const batch = parseInt(a.batch || '1', 10);
  const seconds = parseFloat(a.seconds || '3');
  const warmup = parseFloat(a.warmup || '1');
  const minIters = parseInt(a['min-iters'] || '5', 10);
  const threads = parseInt(a.threads || '0', 10) || cpus();
  if (!(batch > 0)) die(`--batch must be a positive integer, not ${a.batch}`, 2);
  const meta = JSON.parse(fs.readFileSync(path.join(a.onnx, 'export.json'), 'utf8'));
  const t0 = now();
  const file = path.join(a.onnx, wl === 'vision' ? 'vision.onnx' : 'text.onnx');
  const opts = sessionOptions(threads);
  if (a.profile) { opts.enableProfiling = true; opts.profileFilePrefix = a.profile; }
  const sess = await ort.InferenceSession.create(file, opts);
  const loadS = now() - t0;
  let feeds, tokens = 0;
  if (wl === 'vision') {
    const S = meta.image_size;
    feeds = { pixel_values: new ort.Tensor('float32', fillPixels(batch * 3 * S * S), [batch, 3, S, S]) };
  } else {
    const L = meta.context_length;
    const buf = fs.readFileSync(path.join(a.onnx, 'ids-full.bin'));
    const rows = new BigInt64Array(buf.buffer, buf.byteOffset, buf.length / 8);
    const nrows = rows.length / L;
    const ids = new BigInt64Array(batch * L);
    for (let r = 0; r < batch; r++) ids.set(rows.subarray((r % nrows) * L, (r % nrows + 1) * L), r * L);
    for (let r = 0; r < batch; r++) {
      let n = 0;
      for (let j = 0; j < L; j++) if (ids[r * L + j] !== 0n) n++;
      tokens = Math.max(tokens, n);
    }
    feeds = { input_ids: new ort.Tensor('int64', ids, [batch, L]) };
  }
  const outName = sess.outputNames[0];
  let t = now();
  let y = await sess.run(feeds);
  const firstS = now() - t;
  let warm = 0;
  t = now();
  do { y = await sess.run(feeds); warm++; } while (now() - t < warmup);
  const samples = [];
  let total = 0;
  const busy0 = machineBusyS(), self0 = selfCpuS(), wall0 = now();
  while ((total < seconds || samples.length < minIters) && samples.length < 100000) {
    const s = now();
    y = await sess.run(feeds);
    const dt = now() - s;
    samples.push(dt);
    total += dt;
  }
  const wall = now() - wall0;
  const others = Math.max(0, (machineBusyS() - busy0 - (selfCpuS() - self0)) / (wall * os.cpus().length));
  let sum = 0;
  for (const v of y[outName].data) sum += v;
  const env = {};
  for (const k of ['OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'LD_PRELOAD']) if (process.env[k]) env[k] = process.env[k];
  const rec = {
    impl: 'ort', kind: 'timed', config: a.label || 'ort', workload: wl, backend: 'cpu',
    device: 'CPUExecutionProvider', precision: 'fp32', ort: ort.env.versions.node || ort.env.versions.common,
    node: process.versions.node, threads, batch, tokens, first_s: firstS, load_s: loadS, warmup_iters: warm,
    checksum: sum, others_cpu: Math.round(others * 1000) / 1000, maxrss_kb: process.resourceUsage().maxRSS,
    env, samples_s: samples, median_s: median(samples),
  };
  if (a.profile) {
    sess.endProfiling();
    await sess.release();
    const dir = path.dirname(path.resolve(a.profile)), base = path.basename(a.profile);
    const files = fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith('.json'))
      .map((f) => path.join(dir, f)).sort((x, y) => fs.statSync(y).mtimeMs - fs.statSync(x).mtimeMs);
    if (files.length) {
      const ops = {};
      for (const e of JSON.parse(fs.readFileSync(files[0], 'utf8'))) {
        if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
        const k = `${e.args.op_name} (${e.args.provider})`;
        ops[k] = (ops[k] || 0) + e.dur / 1e6;
      }
      rec.ops = ops;
    }
  }
  process.stdout.write(JSON.stringify(rec) + '\n');
}

// a bfloat16 tensor of n values from float32 (round to nearest even)
function bf16Tensor(ort, f32, dims) {
  const u32 = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const u16 = new Uint16Array(f32.length);
  for (let i = 0; i < f32.length; i++) {
    const x = u32[i];
    u16[i] = (x + 0x7FFF + ((x >>> 16) & 1)) >>> 16;
  }
  return new ort.Tensor('bfloat16', u16, dims);
}

async function cmdProbe(a, ort) {
  const file = a.file;
  if (!file) die('--file MODEL.onnx is required', 2);
  const threads = parseInt(a.threads || '0', 10) || cpus();
  const rec = { impl: 'ort', kind: 'probe', file: path.basename(file), ort: ort.env.versions.node };
  let sess;
  try {
    sess = await ort.InferenceSession.create(file, sessionOptions(threads));
  } catch (e) {
    rec.loaded = false;
    rec.error = String(e && e.message ? e.message : e);
    process.stdout.write(JSON.stringify(rec) + '\n');
    return;
  }
  rec.loaded = true;
  rec.inputs = sess.inputNames;
  const meta = a.onnx ? JSON.parse(fs.readFileSync(path.join(a.onnx, 'export.json'), 'utf8')) : {};
  const feeds = {};
  for (const name of sess.inputNames) {
    let dims = [2, 768];
    if (name === 'pixel_values') dims = [1, 3, meta.image_size || 224, meta.image_size || 224];
    const n = dims.reduce((x, y) => x * y, 1);
    // the probe's input type: bfloat16 unless told --float32
    feeds[name] = a.float32 ? new ort.Tensor('float32', fillPixels(n), dims) : bf16Tensor(ort, fillPixels(n), dims);
  }
  try {
    const t = now();
    const y = await sess.run(feeds);
    rec.ran = true;
    rec.run_s = now() - t;
    rec.output_type = y[sess.outputNames[0]].type;
  } catch (e) {
    rec.ran = false;
    rec.error = String(e && e.message ? e.message : e);
  }
  process.stdout.write(JSON.stringify(rec) + '\n');
}

async function cmdCheck(a, ort) {
  const dir = a.dir;
  if (!dir) die('--dir DIR is required', 2);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'spec.json'), 'utf8'));
  const res = { ort: ort.env.versions.node };
  for (const [k, s] of Object.entries(spec)) {
    const sess = await ort.InferenceSession.create(s.model, sessionOptions(cpus()));
    const buf = fs.readFileSync(path.join(dir, s.input));
    const data = s.dtype === 'int64' ? new BigInt64Array(buf.buffer, buf.byteOffset, buf.length / 8)
      : new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    const y = (await sess.run({ [sess.inputNames[0]]: new ort.Tensor(s.dtype, data, s.shape) }))[sess.outputNames[0]];
    const rb = fs.readFileSync(path.join(dir, s.ref));
    const ref = new Float32Array(rb.buffer, rb.byteOffset, rb.length / 4);
    if (ref.length !== y.data.length) die(`${k}: ONNX Runtime gave ${y.data.length} values, PyTorch ${ref.length}`);
    let md = 0, mr = 0;
    for (let i = 0; i < ref.length; i++) {
      md = Math.max(md, Math.abs(y.data[i] - ref[i]));
      mr = Math.max(mr, Math.abs(ref[i]));
    }
    res[k] = md / mr;
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const cmd = a._[0];
  const cmds = { run: cmdRun, probe: cmdProbe, check: cmdCheck };
  if (!cmds[cmd]) die('usage: ort_clip.js run|probe|check [options] (see the header of bench/ort_clip.js)', 2);
  const ort = loadOrt(a['ort-dir']);
  await cmds[cmd](a, ort);
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
