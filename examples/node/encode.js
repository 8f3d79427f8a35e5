#!/usr/bin/env node
// Encode texts with a tastemap model package, using only ONNX Runtime and the tokenizer.
// Follows the contract in models/README.md; run `node encode.js --help` for usage.

import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { Tokenizer } from "tokenizers";

const USAGE = `usage: node encode.js PACKAGE INPUT OUTPUT [--variant auto|fp32|int8|fp16] [--batch-size N] [--threads N]

PACKAGE  a model package folder (manifest.json, model*.onnx, tokenizer.json)
INPUT    a .json file holding an array of strings, or a text file with one text per line
OUTPUT   .json: {"model", "variant", "dim", "ids", "embeddings"} (token ids and vectors, input order)
         any other name: raw float32 rows [texts, dim], little-endian, and the token ids in OUTPUT.ids.json

--variant auto (default) takes int8, else fp32, as tastemap's Encoder does on the CPU.`;
const VARIANTS = ["auto", "fp32", "int8", "fp16"];
const LEVELS = ["disabled", "basic", "extended", "all"]; // manifest names = onnxruntime-node names

/** Bad input (arguments, package, texts): reported as one line and exit code 2. */
class InputError extends Error {}

/** The bytes of `file` from the package, refused unless their sha256 is the manifest's. */
function readVerified(dir, file, expected) {
  const path = join(dir, file);
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch {
    throw new InputError(`${path} is missing from the model package; re-export it`);
  }
  // The bytes hashed are the bytes used, so nothing can change between the check and the load.
  const actual = createHash("sha256").update(bytes).digest("hex");
  if (actual !== expected) {
    throw new InputError(
      `${path} is corrupted or was replaced: its sha256 is ${actual.slice(0, 12)}..., ` +
        `the manifest expects ${String(expected).slice(0, 12)}...; re-export the package`,
    );
  }
  return bytes;
}

function readManifest(dir) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  } catch (error) {
    throw new InputError(`${dir} is not a readable model package (manifest.json: ${error.message})`);
  }
  if (manifest.schema_version !== 1) {
    throw new InputError(`${dir}/manifest.json has schema_version=${manifest.schema_version}, this reads 1`);
  }
  const required = ["embedding_dim", "max_seq_len", "inputs", "outputs", "tokenizer", "variants"];
  const missing = required.filter((key) => !(key in manifest));
  if (missing.length) throw new InputError(`${dir}/manifest.json lacks the keys ${missing.join(", ")}`);
  return manifest;
}

/** The variant to load and why, chosen as tastemap's Encoder does when it runs on the CPU. */
function pickVariant(requested, available) {
  if (!VARIANTS.includes(requested)) {
    throw new InputError(`--variant ${requested} is not one of ${VARIANTS.join(", ")}`);
  }
  if (requested !== "auto") {
    if (!available.includes(requested)) {
      throw new InputError(`variant ${requested} is not in the package (it has ${available.join(", ")})`);
    }
    return [requested, "requested"];
  }
  if (available.includes("int8")) return ["int8", "auto: int8 on the CPU"];
  const chosen = available.includes("fp32") ? "fp32" : [...available].sort()[0];
  return [chosen, "auto: the package has no int8 variant"];
}

function readTexts(path) {
  let content;
  try {
    content = readFileSync(path, "utf8");
  } catch (error) {
    throw new InputError(`cannot read ${path}: ${error.message}`);
  }
  if (!path.endsWith(".json")) {
    const lines = content.split(/\r?\n/);
    return lines.at(-1) === "" ? lines.slice(0, -1) : lines; // a final newline ends the last text
  }
  let texts;
  try {
    texts = JSON.parse(content);
  } catch (error) {
    throw new InputError(`${path} is not valid JSON: ${error.message}`);
  }
  const bad = Array.isArray(texts) ? texts.findIndex((text) => typeof text !== "string") : -1;
  if (!Array.isArray(texts) || bad >= 0) {
    throw new InputError(`${path} should hold a JSON array of strings` + (bad >= 0 ? `; item ${bad} is not` : ""));
  }
  return texts;
}

/** int64 tensors [rows, longest] for one batch, padded on the right with pad_token_id. */
function makeFeeds(rows, inputNames, padId) {
  const width = Math.max(...rows.map((ids) => ids.length));
  const inputIds = new BigInt64Array(rows.length * width).fill(BigInt(padId));
  const mask = new BigInt64Array(rows.length * width); // 0 = padding
  rows.forEach((ids, row) => {
    ids.forEach((id, col) => {
      inputIds[row * width + col] = BigInt(id);
      mask[row * width + col] = 1n;
    });
  });
  const typeIds = new BigInt64Array(rows.length * width); // single texts: all zeros
  const arrays = { input_ids: inputIds, attention_mask: mask, token_type_ids: typeIds };
  const shape = [rows.length, width];
  return Object.fromEntries(inputNames.map((name) => [name, new ort.Tensor("int64", arrays[name], shape)]));
}

function writeAtomic(path, data) {
  writeFileSync(`${path}.tmp`, data); // a reader never sees half a file
  renameSync(`${path}.tmp`, path);
}

async function main(argv) {
  const { values: opts, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      variant: { type: "string", default: "auto" },
      "batch-size": { type: "string", default: "32" },
      threads: { type: "string", default: String(availableParallelism()) }, // honours the CPU affinity
      help: { type: "boolean", short: "h" },
    },
  });
  if (opts.help) return console.log(USAGE);
  if (positionals.length !== 3) throw new InputError(`expected PACKAGE INPUT OUTPUT\n${USAGE}`);
  const [dir, input, output] = positionals;
  const batchSize = Number(opts["batch-size"]);
  const threads = Number(opts.threads);
  for (const [name, value] of [["--batch-size", batchSize], ["--threads", threads]]) {
    if (!Number.isInteger(value) || value < 1) throw new InputError(`${name} should be an integer >= 1`);
  }

  const manifest = readManifest(dir);
  const [variant, why] = pickVariant(opts.variant, Object.keys(manifest.variants));
  const info = manifest.variants[variant];
  const level = info.ort_graph_optimization ?? "basic";
  if (!LEVELS.includes(level)) throw new InputError(`ort_graph_optimization=${level} is not one of ${LEVELS}`);
  const inputNames = manifest.inputs.map((item) => item.name);
  const unknown = inputNames.filter((name) => !["input_ids", "attention_mask", "token_type_ids"].includes(name));
  if (unknown.length) throw new InputError(`the graph wants inputs this program does not know: ${unknown}`);
  console.error(`variant ${variant} (${why}), graph optimization ${level}, ${threads} threads`);
  if (variant === "fp16") console.error("warning: the fp16 variant is built for GPUs and runs slowly on the CPU");

  const tokenizerBytes = readVerified(dir, "tokenizer.json", manifest.tokenizer.files["tokenizer.json"]);
  const modelBytes = readVerified(dir, info.file, info.sha256);
  const texts = readTexts(input);

  // tokenizer.json keeps the source model's own truncation and padding; the manifest's settings rule.
  const tokenizer = Tokenizer.fromString(tokenizerBytes.toString("utf8"));
  tokenizer.setTruncation(manifest.tokenizer.truncation ?? manifest.max_seq_len, {
    strategy: "LongestFirst",
    direction: "right",
    stride: 0,
  });
  tokenizer.disablePadding(); // padded per batch below, to that batch's longest text
  const ids = (await tokenizer.encodeBatch(texts)).map((encoding) => encoding.getIds());

  const session = await ort.InferenceSession.create(modelBytes, {
    executionProviders: ["cpu"],
    graphOptimizationLevel: level,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    enableMemPattern: false, // shapes change from batch to batch
    logSeverityLevel: 3,
  });
  const outputName = manifest.outputs[0].name;
  const dim = manifest.embedding_dim;
  const vectors = new Float32Array(texts.length * dim);
  // Longest texts first, so each batch pads little; rows are independent, so grouping changes nothing.
  const order = [...texts.keys()].sort((a, b) => ids[b].length - ids[a].length);
  for (let start = 0; start < order.length; start += batchSize) {
    const batch = order.slice(start, start + batchSize);
    const feeds = makeFeeds(batch.map((i) => ids[i]), inputNames, manifest.tokenizer.pad_token_id);
    const result = (await session.run(feeds, [outputName]))[outputName];
    if (result.type !== "float32" || result.dims[1] !== dim) {
      throw new Error(`${outputName} is ${result.type} ${result.dims}, the manifest says float32 [batch, ${dim}]`);
    }
    batch.forEach((i, row) => vectors.set(result.data.subarray(row * dim, (row + 1) * dim), i * dim));
  }

  if (output.endsWith(".json")) {
    const embeddings = ids.map((_, i) => Array.from(vectors.subarray(i * dim, (i + 1) * dim)));
    writeAtomic(output, JSON.stringify({ model: manifest.name, variant, dim, ids, embeddings }));
  } else {
    writeAtomic(output, new Uint8Array(vectors.buffer)); // platform order: little-endian on x64 and arm64
    writeAtomic(`${output}.ids.json`, JSON.stringify(ids));
  }
  console.error(`encoded ${texts.length} texts into ${output}`);
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof InputError || error.code?.startsWith("ERR_PARSE_ARGS"))) throw error;
  console.error(`error: ${error.message}`);
  process.exitCode = 2;
}
