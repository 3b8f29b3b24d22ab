// The buyer page (buyer.html) driven in headless Chromium against a running edge and
// worker: enter the line, wait for the turn, hold a seat from the seat map, pay, and
// see the order CONFIRMED. The page is served from another origin than the API's, so
// every call goes through CORS; the same page served from an origin the edge does not
// list is refused by the browser.
//
// Environment (tests/browser/run.sh sets it): API (the edge's http://host:port),
// PAGE_PORT (where this test serves the page; http://localhost:PAGE_PORT must be in
// the edge's CORS_ALLOWED_ORIGINS, http://127.0.0.1:PAGE_PORT must not), WORKER_BIN and
// REDIS_URL/DATABASE_URL (to seed this run's event), CHROMIUM (default
// /usr/bin/chromium), OUT_DIR (screenshots and report.html).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const API = need("API");
const PAGE_PORT = Number(need("PAGE_PORT"));
const OUT_DIR = process.env.OUT_DIR || join(HERE, "out");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 30_000;
const OPENS_IN_SECS = 3;

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests/browser/run.sh (make e2e)`);
  return value;
}

let server, browser;
const steps = [];
const report = { started: new Date(), consoleErrors: [], seatMap: null, outcome: "not run" };

before(async () => {
  mkdirSync(OUT_DIR, { recursive: true });
  const page = readFileSync(join(HERE, "buyer.html"));
  server = createServer((req, res) => {
    if (req.url.split("?")[0] !== "/buyer.html") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
  });
  await new Promise((ok) => server.listen(PAGE_PORT, "127.0.0.1", ok));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});

after(async () => {
  await browser?.close();
  await new Promise((ok) => (server ? server.close(ok) : ok()));
  writeReport();
});

// Runs one named step, timing it for the report.
async function step(name, fn) {
  const began = performance.now();
  try {
    const detail = await fn();
    steps.push({ name, ms: performance.now() - began, ok: true, detail: detail ?? "" });
    return detail;
  } catch (e) {
    steps.push({ name, ms: performance.now() - began, ok: false, detail: e.message });
    throw e;
  }
}

test("a buyer on the ticket site's origin buys a seat, and the order is CONFIRMED", async () => {
  const event = `browser-${Date.now().toString(36)}`;
  await step(`seed event ${event}, opening in ${OPENS_IN_SECS} s`, () => {
    execFileSync(need("WORKER_BIN"), [
      "seed", event, "--sections", "A,B", "--seats-per-section", "2000",
      "--open-in-secs", String(OPENS_IN_SECS), "--rate", "1000",
    ], { stdio: ["ignore", "ignore", "inherit"] });
  });

  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("console", (m) => m.type() === "error" && report.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => report.consoleErrors.push(String(e)));
  const seatMaps = [];
  const waits = { "room-events": 0, "room-status": 0 };
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path === "/public/room-events") waits["room-events"]++;
    if (path === "/public/room-status") waits["room-status"]++;
  });
  page.on("response", async (r) => {
    if (r.url().includes("/public/seats/")) {
      const h = await r.allHeaders();
      seatMaps.push({ encoding: h["content-encoding"] || "identity", length: h["content-length"] });
    }
  });

  const url = `http://localhost:${PAGE_PORT}/buyer.html?api=${encodeURIComponent(API)}` +
    `&event=${event}&pollMs=250`;
  try {
    await step("open the page from http://localhost (another origin than the API)", async () => {
      await page.goto(url);
      assert.notEqual(new URL(url).origin, new URL(API).origin);
      return new URL(url).origin;
    });

    const user = await page.inputValue("#user");
    await step("enter the line: a position before the room opens", async () => {
      await page.click("#enter-button");
      await page.waitForFunction(() => /number \d+ in the line/.test(document.querySelector("#room").textContent));
      return page.textContent("#room");
    });

    await step("watch the position until it is the buyer's turn (pushed: room-events)", async () => {
      await page.waitForSelector("#room[data-ready=true]");
      // The stream worked from the other origin (CORS on its head): no polling.
      assert.equal(waits["room-status"], 0, "the page fell back to polling");
      assert.ok(waits["room-events"] >= 1, "the page never opened the stream");
      return page.textContent("#room");
    });

    const seat = await step("see the seat map as a grid, hold the first free seat", async () => {
      await page.waitForSelector("#grid .seat.A");
      assert.equal(await page.locator("#grid .seat").count(), 2000);
      const cell = page.locator("#grid .seat.A").first();
      const seatId = await cell.getAttribute("data-seat");
      await cell.click();
      await page.waitForSelector("#cart:not([hidden])");
      assert.equal(await page.textContent("#held"), seatId);
      assert.equal(await page.locator("#grid .seat.mine").count(), 1);
      return seatId;
    });
    report.seatMap = seatMaps[0];
    assert.equal(seatMaps[0]?.encoding, "gzip", "Chromium takes gzip, so the seat map comes gzipped");

    await step("pay (payment intent, then commit), watch the order become CONFIRMED", async () => {
      await page.click("#pay");
      await page.waitForSelector("#order.CONFIRMED, #order.REJECTED, #error:not(:empty)");
      const error = await page.textContent("#error");
      assert.equal(error, "", "the page showed an error");
      const order = await page.textContent("#order");
      assert.match(order, new RegExp(`Order for ${seat}, \\d+ KRW: CONFIRMED`));
      return order;
    });

    await step("screenshot of the confirmed order", async () => {
      await page.screenshot({ path: join(OUT_DIR, "confirmed.png"), fullPage: true });
      return "confirmed.png";
    });

    await step("the same page from an origin the edge does not list is refused by the browser", async () => {
      const other = await context.newPage();
      await other.goto(url.replace("//localhost:", "//127.0.0.1:"));
      const outcome = await other.evaluate(async (api) => {
        try {
          await fetch(api + "/public/ping");
          return "answered";
        } catch (e) {
          return "refused: " + e.message;
        }
      }, API);
      await other.close();
      assert.match(outcome, /^refused/);
      return outcome;
    });
    assert.deepEqual(report.consoleErrors.filter((e) => !/ERR_FAILED|CORS/.test(e)), []);
    report.outcome = `passed: ${user} bought ${seat}`;
  } catch (e) {
    report.outcome = `failed: ${e.message}`;
    await page.screenshot({ path: join(OUT_DIR, "failed.png"), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
});

function writeReport() {
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const shot = report.outcome.startsWith("passed") ? "confirmed.png" : "failed.png";
  const rows = steps.map((s) => `<tr class="${s.ok ? "ok" : "bad"}"><td>${s.ok ? "✔" : "✘"}</td>` +
    `<td>${esc(s.name)}</td><td>${s.ms.toFixed(0)} ms</td><td>${esc(s.detail)}</td></tr>`).join("\n");
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Buyer page e2e</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5rem}td{padding:.2rem .6rem;border-bottom:1px solid #ddd}
.ok td:first-child{color:#1b7f3b}.bad td:first-child{color:#b00020}img{max-width:100%;border:1px solid #ccc}</style></head>
<body><h1>Buyer page, headless Chromium</h1>
<p><b>${esc(report.outcome)}</b></p>
<p>${esc(report.started.toISOString())}; API ${esc(API)}; page http://localhost:${PAGE_PORT}/buyer.html; ${esc(CHROMIUM)}</p>
<p>Seat map as received: ${esc(JSON.stringify(report.seatMap))}</p>
<table>${rows}</table>
<h2>Console errors</h2><pre>${esc(report.consoleErrors.join("\n") || "none")}</pre>
<h2>Screenshot</h2><img src="${shot}" alt="${shot}"></body></html>`;
  writeFileSync(join(OUT_DIR, "report.html"), html);
}
