// The reference JSONata engine (npm `jsonata`) on the same expression, input and bindings as
// `cargo run --release -p switchboard-bench --bin mapping`, which runs this script and prints
// both side by side. Prints one JSON line:
//   {"version", "evaluate_ns": [...], "from_text_ns": [...], "result"}
// evaluate: the expression over one parsed input (as the Rust side evaluates a prepared scope);
// from_text: JSON.parse of the body's text, then evaluate (as the Rust side parses each event).
//
// node bench.mjs EXPRESSION_FILE INPUT_JSON BINDINGS_JSON SAMPLES SAMPLE_MS
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const jsonata = require("jsonata");
const version = require("jsonata/package.json").version;

const [exprFile, inputFile, bindingsFile, samplesArg, sampleMsArg] = process.argv.slice(2);
const expression = jsonata(readFileSync(exprFile, "utf8"));
const text = readFileSync(inputFile, "utf8");
const input = JSON.parse(text);
const bindings = JSON.parse(readFileSync(bindingsFile, "utf8"));
const samples = Number(samplesArg);
const sampleMs = Number(sampleMsArg);

async function measure(once) {
  // Warm-up: let the JIT settle.
  const warmUntil = performance.now() + 2 * sampleMs;
  while (performance.now() < warmUntil) await once();
  const perEvent = [];
  for (let s = 0; s < samples; s++) {
    let n = 0;
    const start = process.hrtime.bigint();
    const until = performance.now() + sampleMs;
    while (performance.now() < until) {
      await once();
      n++;
    }
    perEvent.push(Number(process.hrtime.bigint() - start) / n);
  }
  return perEvent;
}

const result = await expression.evaluate(JSON.parse(text), bindings);
const evaluate_ns = await measure(() => expression.evaluate(input, bindings));
const from_text_ns = await measure(() => expression.evaluate(JSON.parse(text), bindings));
console.log(JSON.stringify({ version, evaluate_ns, from_text_ns, result }));
