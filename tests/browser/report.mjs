// The daily report's HTML (reports/html.j2, rendered by `zkalert report`) in a
// real browser: Debian's chromium driven by playwright-core, from a file, as
// a mail client or someone saving the page would open it. Environment:
//
//   REPORT_HTML     the rendered report (an absolute path)
//   EXPECT_CLUSTER  the cluster it is about (in the title)
//   EXPECT_NODES    how many node rows it has
//   EXPECT_ALERT    an alertname among its alert rows (optional)
//   SCREENSHOTS     where report.png goes
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Checks the title, the status badge, the node rows, every section, the
// expected alert; that the page logs no errors and asks for nothing over the
// network (it is self-contained: an email body). Saves a full-page
// screenshot, prints one line of JSON saying what it checked, and exits
// non-zero with the reason on any failure. Bounded: 60 s in all.

import { chromium } from "playwright-core";
import { existsSync, mkdirSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { pathToFileURL } from "node:url";

const report = process.env.REPORT_HTML;
const cluster = process.env.EXPECT_CLUSTER;
const expectNodes = process.env.EXPECT_NODES;
const expectAlert = process.env.EXPECT_ALERT || "";
const shots = process.env.SCREENSHOTS || "target/browser-screenshots";
if (!report || !cluster || expectNodes === undefined || !/^\d+$/.test(expectNodes)) {
  console.error("report.mjs: set REPORT_HTML, EXPECT_CLUSTER and EXPECT_NODES (a number)");
  process.exit(2);
}
if (!isAbsolute(report) || !existsSync(report)) {
  console.error(`report.mjs: REPORT_HTML must be an existing file's absolute path (${report})`);
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const deadline = setTimeout(() => {
  console.error("report.mjs: over 60 s, giving up");
  process.exit(3);
}, 60_000);

const SECTIONS = ["nodes", "disks", "elections", "alerts", "silences", "delivery-failures"];
const url = pathToFileURL(report).href;
const checked = [];

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  checked.push(what);
}

/** A CSS attribute value in double quotes. */
function quoted(s) {
  return `"${s.replace(/["\\]/g, "\\$&")}"`;
}

let browser;
let code = 0;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 20_000,
  });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  ctx.setDefaultTimeout(10_000);
  const page = await ctx.newPage();

  const consoleErrors = [];
  const failed = [];
  const external = [];
  let requests = 0;
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("request", (r) => {
    requests += 1;
    const u = r.url();
    if (u !== url && !u.startsWith("data:")) external.push(u);
  });
  page.on("requestfailed", (r) => failed.push(`${r.url()}: ${r.failure()?.errorText ?? "failed"}`));

  const response = await page.goto(url, { waitUntil: "load" });
  check(response === null || response.ok(), `the page loads (${url})`);

  const title = await page.title();
  check(title.includes(cluster), `the title names the cluster ${JSON.stringify(cluster)} (${JSON.stringify(title)})`);

  const badge = page.locator("#status");
  check((await badge.count()) === 1, "one #status badge");
  check(await badge.isVisible(), "#status is visible");
  const status = (await badge.innerText()).trim();
  check(status !== "", `#status has text (${JSON.stringify(status)})`);

  const missing = [];
  for (const id of SECTIONS) {
    if ((await page.locator(`section#${id}`).count()) !== 1) missing.push(id);
  }
  check(missing.length === 0, `every section is there (missing: ${missing.join(", ") || "none"})`);

  const nodes = await page.locator("#nodes tr.node").count();
  check(nodes === Number(expectNodes), `#nodes has ${expectNodes} node rows (${nodes})`);

  const alerts = await page.locator("#alerts tr.alert").count();
  if (expectAlert) {
    const rows = await page.locator(`#alerts tr.alert[data-alertname=${quoted(expectAlert)}]`).count();
    check(rows > 0, `#alerts has a row for ${expectAlert} (${rows} of ${alerts} rows)`);
  }

  await page.screenshot({ path: join(shots, "report.png"), fullPage: true });

  check(consoleErrors.length === 0, `no console errors (${consoleErrors.join(" | ") || "none"})`);
  check(failed.length === 0, `no failed requests (${failed.join(" | ") || "none"})`);
  check(external.length === 0, `nothing fetched besides the page itself (${external.join(" | ") || "none"})`);

  console.log(
    JSON.stringify({
      ok: true,
      report,
      title,
      status,
      nodes,
      alerts,
      expect_alert: expectAlert || null,
      sections: SECTIONS,
      requests,
      console_errors: consoleErrors.length,
      failed_requests: failed.length,
      screenshot: join(shots, "report.png"),
      checks: checked.length,
    }),
  );
} catch (e) {
  console.error(`report.mjs: ${e.message}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(deadline);
}
process.exit(code);
