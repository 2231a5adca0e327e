// Run a TFJS graph model on raw float32 NHWC input in node (pure-JS CPU backend) and write the
// requested outputs as raw float32: idface's reference for its PyTorch port (tests/tfjs).
//   node run_graph.js MODEL.json INPUT.f32 B,H,W,C OUTDIR [node names, comma-separated]
// Each sample of the batch runs on its own (some graphs fix batch 1); outputs are concatenated.
// Writes OUTDIR/<i>.f32 per output and OUTDIR/outputs.json ([{name, shape}]).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function fileHandler(modelPath) {
  return {
    load: async () => {
      const doc = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of doc.weightsManifest) {
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelPath), p)));
        specs.push(...group.weights);
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: doc.modelTopology, format: doc.format, generatedBy: doc.generatedBy,
        convertedBy: doc.convertedBy, signature: doc.signature, userDefinedMetadata: doc.userDefinedMetadata,
        weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}

async function main() {
  const [modelPath, inputPath, shapeArg, outDir, namesArg] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await tf.loadGraphModel(fileHandler(modelPath));
  const shape = shapeArg.split(',').map(Number);
  const raw = fs.readFileSync(inputPath);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor(data, shape, 'float32');
  const names = namesArg ? namesArg.split(',') : model.outputNodes;
  const perSample = [];
  for (let b = 0; b < shape[0]; b++) {
    const xb = tf.slice(x, [b, 0, 0, 0], [1, shape[1], shape[2], shape[3]]);
    const res = model.execute(xb, names);
    perSample.push(Array.isArray(res) ? res : [res]);
  }
  const outs = names.map((_, i) => tf.concat(perSample.map((r) => r[i]), 0));
  const meta = [];
  fs.mkdirSync(outDir, { recursive: true });
  for (let i = 0; i < outs.length; i++) {
    const values = await outs[i].data();
    fs.writeFileSync(path.join(outDir, `${i}.f32`), Buffer.from(new Float32Array(values).buffer));
    meta.push({ name: names[i], shape: outs[i].shape });
  }
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify(meta));
}

main().catch((err) => { console.error(String(err && err.message ? err.message : err)); process.exit(1); });
