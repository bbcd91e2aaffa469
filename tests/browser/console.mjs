// The web console in a real browser: Debian's chromium driven by
// playwright-core against a running `zkalert run` whose alerts fire
// (started by tests/it/console.rs, which passes it in the environment):
//
//   ZKALERT_URL      the API/console base URL
//   ZKALERT_TOKEN    the API token
//   NOTIFICATIONS    the file notifier's JSON lines (messages with ack_url)
//   SCREENSHOTS      where each page's screenshot goes
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// On a phone-sized viewport (390×844): log in, see the alerts, ack a group
// and see the ack in GET /api/v1/groups, preview, create and expire a
// silence, open a runbook, then open an ack link from a message without
// logging in and ack. No page may scroll sideways. Bounded: 60 s in all.

import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.ZKALERT_URL;
const token = process.env.ZKALERT_TOKEN;
const notifications = process.env.NOTIFICATIONS;
const shots = process.env.SCREENSHOTS || "target/browser-screenshots";
if (!base || !token || !notifications) {
  console.error("console.mjs: set ZKALERT_URL, ZKALERT_TOKEN and NOTIFICATIONS");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const deadline = setTimeout(() => {
  console.error("console.mjs: over 60 s, giving up");
  process.exit(3);
}, 60_000);

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function api(path) {
  const r = await fetch(base + path, { headers: { accept: "application/json" } });
  return r.json();
}

/** A screenshot of the whole page, and no sideways scrolling at this width. */
async function snap(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  check(scroll <= client, `${name}: no horizontal scrolling (${scroll} <= ${client})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  timeout: 20_000,
});
const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
try {
  const ctx = await browser.newContext(phone);
  ctx.setDefaultTimeout(10_000);
  const page = await ctx.newPage();

  // Alerts, read without logging in.
  await page.goto(base + "/");
  await page.getByText("NodeDown").first().waitFor();
  const alerts = await page.locator("li.alert").count();
  check(alerts >= 3, `alerts page lists the firing alerts (${alerts})`);
  check(await page.getByText("node n0 is down").isVisible(), "an alert's summary shows");
  await snap(page, "01-alerts");

  // Log in once; the session cookie is HttpOnly (not readable by scripts).
  await page.goto(base + "/login?next=/groups");
  await snap(page, "02-login");
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForURL(base + "/groups"), page.click("form[action='/login'] button")]);
  check(await page.evaluate(() => document.cookie) === "", "the session cookie is not visible to scripts");
  const cookies = await ctx.cookies();
  check(cookies.some((c) => c.httpOnly && c.sameSite === "Strict" && !c.value.includes(token)), "HttpOnly, SameSite=Strict cookie without the token");

  // Ack the group of node n0 and see it in the API.
  const card = page.locator("li.card", { hasText: 'node=n0' });
  await card.locator("input[name=by]").fill("pw-oncall");
  await card.locator("input[name=comment]").fill("on it");
  await Promise.all([page.waitForURL(base + "/groups"), card.locator("button", { hasText: "Ack" }).click()]);
  await card.getByText("Acknowledged: pw-oncall").waitFor();
  const groups = await api("/api/v1/groups");
  check(groups.groups.some((g) => g.labels.node === "n0" && g.ack && g.ack.by === "pw-oncall"), "the ack is in GET /api/v1/groups");
  await snap(page, "03-groups-acked");

  // A silence: preview what it matches, create it, expire it.
  await page.goto(base + "/silences");
  await page.fill("input[name=matchers]", '{node="n1"}');
  await page.fill("input[name=duration]", "1h");
  await page.fill("input[name=created_by]", "pw-oncall");
  await page.fill("input[name=comment]", "swapping the disk");
  await Promise.all([page.waitForURL(/preview=1/), page.click("button[name=preview]")]);
  await page.getByText("Would silence 1 current alert").waitFor();
  await snap(page, "04-silence-preview");
  await Promise.all([page.waitForURL(base + "/silences"), page.click("button:has-text('Create')")]);
  const created = page.locator("li.silence", { hasText: "swapping the disk" });
  await created.locator(".badge.active").waitFor();
  let silences = await api("/api/v1/silences");
  const silence = silences.silences.find((s) => s.comment === "swapping the disk");
  check(silence && silence.state === "active", "the silence is active in the API");
  await snap(page, "05-silence-active");
  await Promise.all([page.waitForURL(base + "/silences"), created.locator("button", { hasText: "Expire" }).click()]);
  await page.locator("li.silence", { hasText: "swapping the disk" }).locator(".badge.expired").waitFor();
  silences = await api("/api/v1/silences");
  check(silences.silences.find((s) => s.id === silence.id).state === "expired", "the silence is expired in the API");
  await snap(page, "06-silence-expired");

  // A runbook link from the alerts page opens the rendered runbook.
  await page.goto(base + "/");
  await Promise.all([page.waitForURL(/\/runbooks\//), page.locator("a", { hasText: "runbook" }).first().click()]);
  await page.locator("article.runbook h1", { hasText: "Node down" }).waitFor();
  await snap(page, "07-runbook");

  for (const [path, name] of [["/clusters", "08-clusters"], ["/deliveries", "09-deliveries"], ["/rules", "10-rules"]]) {
    await page.goto(base + path);
    await page.locator("main h1").first().waitFor();
    await snap(page, name);
  }
  check(await page.locator("text=NodeDown").count() > 0, "the rules page lists the rule");

  // An ack link from a file-notifier message, in a fresh browser: no login.
  const messages = readFileSync(notifications, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const n2 = messages.find((m) => m.ack_url && m.group.node === "n2" && m.firing.length > 0);
  check(n2 && /[?]exp=\d+&sig=[0-9a-f]{64}$/.test(n2.ack_url), `a message carries an ack link with its capability (${n2 && n2.ack_url})`);
  const stranger = await browser.newContext(phone);
  stranger.setDefaultTimeout(10_000);
  const linkPage = await stranger.newPage();
  await linkPage.goto(n2.ack_url);
  await linkPage.getByText("node n2 is down").waitFor();
  check((await stranger.cookies()).length === 0, "no login, no cookie");
  await snap(linkPage, "11-ack-link");
  await linkPage.fill("input[name=by]", "pw-phone");
  await linkPage.click("button[value=ack]");
  await linkPage.getByText("Acknowledged by pw-phone").first().waitFor();
  await snap(linkPage, "12-ack-link-done");
  const after = await api("/api/v1/groups");
  check(after.groups.some((g) => g.labels.node === "n2" && g.ack && g.ack.by === "pw-phone"), "the ack link's ack is in GET /api/v1/groups");

  const forged = await linkPage.goto(n2.ack_url.replace(/sig=./, (m) => (m.endsWith("0") ? "sig=1" : "sig=0")));
  check(forged.status() === 403, `a forged link is refused (${forged.status()})`);
  await snap(linkPage, "13-ack-link-forged");
  console.log(`screenshots in ${shots}`);
} finally {
  await browser.close();
  clearTimeout(deadline);
}
