// perf/pow/bench.mjs: how long a client takes to solve enter's proof-of-work
// (edge/src/pow.rs) at each difficulty, with Node's SHA-256 as a stand-in for a
// browser's. Two ways a page can hash:
//   - WebCrypto `crypto.subtle.digest` (what a browser offers natively; async, one
//     promise per hash, so the per-call overhead dominates), and
//   - node:crypto `createHash` (native and synchronous: a lower bound, like a page
//     using a WebAssembly SHA-256).
// It measures hashes/s of each for a few seconds, then solves real-shaped challenges at
// small difficulties to check the expected 2^bits hashes, and prints a Markdown table of
// the expected (mean) time per difficulty. A solve's time is geometric: the 95th
// percentile is about 3x the mean.
//
//   node perf/pow/bench.mjs [seconds-per-measurement]   (default 3)

import { createHash, webcrypto } from "node:crypto";

const seconds = Number(process.argv[2] ?? 3);
const challenge =
  "MXwxNzk2MTE5MzIwMDAwfGRlbW98M2Y5YzJhMWIwMDAwMDAwMQ.q0Xr9m3kYb2c1dV8gkR7z4yH6pT0nA5sL2wE9uJ1fQo";
const user = "u-000123";
const encoder = new TextEncoder();

function leadingZeroBits(bytes) {
  let bits = 0;
  for (const b of bytes) {
    if (b === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

function nodeHash(nonce) {
  return createHash("sha256").update(`${challenge}:${user}:${nonce}`).digest();
}

async function webHash(nonce) {
  const digest = await webcrypto.subtle.digest(
    "SHA-256",
    encoder.encode(`${challenge}:${user}:${nonce}`),
  );
  return new Uint8Array(digest);
}

async function rate(name, hash, inFlight = 1) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i += inFlight) {
      const batch = [];
      for (let j = 0; j < inFlight; j++) batch.push(hash(n++));
      await Promise.all(batch);
    }
  }
  const perSec = n / seconds;
  console.error(`${name}: ${Math.round(perSec).toLocaleString("en")} hashes/s`);
  return perSec;
}

async function solve(bits, hash, start) {
  for (let nonce = start; ; nonce++) {
    if (leadingZeroBits(await hash(nonce)) >= bits) return nonce - start + 1;
  }
}

const webSerial = await rate("WebCrypto subtle.digest, one at a time", webHash);
const web = await rate("WebCrypto subtle.digest, 100 in flight", webHash, 100);
const native = await rate("node:crypto createHash", (n) => nodeHash(n));

// Check the model: mean hashes to solve at 12 bits over 40 solves, expected 4096.
let total = 0;
for (let i = 0; i < 40; i++) total += await solve(12, (n) => nodeHash(n), i * 1e7);
console.error(`12 bits: ${Math.round(total / 40)} hashes on average over 40 solves (expected 4096)`);

const fmt = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);
console.log(`| ENTER_POW_BITS | hashes (mean) | WebCrypto one at a time, mean (p95) | WebCrypto 100 in flight, mean (p95) | node:crypto (native, sync), mean (p95) |`);
console.log(`|---|---|---|---|---|`);
for (const bits of [8, 12, 14, 16, 18, 20, 22, 24]) {
  const h = 2 ** bits;
  const p95 = 3; // -ln(0.05) for a geometric number of tries
  console.log(
    `| ${bits} | ${h.toLocaleString("en")} | ${fmt(h / webSerial)} (${fmt((p95 * h) / webSerial)}) | ${fmt(h / web)} (${fmt((p95 * h) / web)}) | ${fmt(h / native)} (${fmt((p95 * h) / native)}) |`,
  );
}
console.log(
  `\nMeasured on this machine (node ${process.version}): WebCrypto ${Math.round(webSerial).toLocaleString("en")} hashes/s one at a time, ${Math.round(web).toLocaleString("en")} with 100 in flight, node:crypto ${Math.round(native).toLocaleString("en")} hashes/s, one thread.`,
);
