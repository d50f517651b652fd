// The snapnest web console, driven as a person would in headless Chromium (playwright-core,
// Debian's chromium): each step acts through the page, asserts what it shows and saves a
// screenshot. tests/tests/console.rs starts the API (cargo lambda watch), the schedule
// runner and `snapnest console`, then runs this.
//
//   SNAPNEST_CONSOLE_URL   the console's base URL, e.g. http://127.0.0.1:8080 (required)
//   SNAPNEST_ARTIFACTS     folder for the screenshots (default ./console-artifacts)
//   CHROMIUM               the browser (default /usr/bin/chromium)
//   SNAPNEST_CONSOLE_SI    the service instance (default si-demo)
//   SNAPNEST_CONSOLE_TIMEOUT_MS  how long a backup or restore may take to end (default 180000)
//
// Step 3 cancels a running backup: the simulated snapshots must take long enough
// (SNAPNEST_SIM_SNAPSHOT_SECONDS of the API, a few seconds).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

const base = (process.env.SNAPNEST_CONSOLE_URL || '').replace(/\/+$/, '');
if (!base) {
  console.error('console.mjs: set SNAPNEST_CONSOLE_URL to the console, e.g. http://127.0.0.1:8080');
  process.exit(2);
}
const artifacts = path.resolve(process.env.SNAPNEST_ARTIFACTS || 'console-artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const SI = process.env.SNAPNEST_CONSOLE_SI || 'si-demo';
const LONG = Number(process.env.SNAPNEST_CONSOLE_TIMEOUT_MS || 180000);
const SHORT = 60000; // a first call of a function under watch starts its process
const TERMINAL = ['Succeeded', 'PartiallyFailed', 'Failed', 'Cancelled', 'Expired', 'RolledBack'];

mkdirSync(artifacts, { recursive: true });

// Without these flags Chromium calls its own services at start, which a machine without
// internet access (a CI runner) waits on.
const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, timezoneId: 'UTC', locale: 'en-US' });
const page = await context.newPage();
page.setDefaultTimeout(SHORT);

// What the page itself got wrong: script errors and refused resources (the console's CSP).
const problems = [];
page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
});

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  screenshot ${file}`);
}

let stepNo = 0;
async function step(name, fn) {
  stepNo += 1;
  const started = Date.now();
  console.log(`step ${stepNo}: ${name}`);
  try {
    await fn();
  } catch (e) {
    const file = path.join(artifacts, `failure-step-${stepNo}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const banner = await page
      .getByTestId('error')
      .filter({ visible: true })
      .innerText({ timeout: 1000 })
      .catch(() => null);
    console.error(`\nFAILED step ${stepNo} (${name}): ${e.message}`);
    if (banner) console.error(`the page's error banner says: ${banner.replace(/\s+/g, ' ')}`);
    if (problems.length) console.error(`the page reported:\n  ${problems.join('\n  ')}`);
    console.error(`screenshot of the failure: ${file}`);
    await browser.close();
    process.exit(1);
  }
  console.log(`  ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

/** The page's error banner must be hidden: a refused call would be shown there. */
async function noError() {
  const banner = page.getByTestId('error');
  if (await banner.isVisible()) throw new Error(`the page shows an error: ${(await banner.innerText()).replace(/\s+/g, ' ')}`);
}

/** Clicks `button` and answers the JSON of the API call `method path` it makes. */
async function clickFor(button, method, pathEnd) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname.endsWith(pathEnd)),
    button.click(),
  ]);
  const body = await response.json();
  assert.ok(response.ok(), `${method} ${pathEnd} answered ${response.status()}: ${JSON.stringify(body)}`);
  return body;
}

/** Waits until the live progress shows `id` ended, and that it ended `want`. */
async function followedUntilEnd(id, want) {
  const entry = page.getByTestId(`activity-${id}`);
  await entry.waitFor({ timeout: SHORT });
  const seen = new Set();
  const deadline = Date.now() + LONG;
  for (;;) {
    const status = await entry.getAttribute('data-status');
    seen.add(status);
    if (TERMINAL.includes(status)) {
      const text = (await entry.innerText()).replace(/\s+/g, ' ');
      assert.equal(status, want, `${id} ended ${status}, not ${want}: ${text}`);
      console.log(`  ${id}: ${[...seen].join(' → ')}`);
      return entry;
    }
    if (Date.now() > deadline) {
      const record = await api(id.startsWith('rs-') ? `/restores/${id}` : `/backups/${id}`).catch((e) => ({ unreadable: e.message }));
      const where = record.summary ? `${record.status}${record.phase ? ` (phase ${record.phase})` : ''}: ${record.summary.headline}` : JSON.stringify(record);
      throw new Error(`${id} did not end within ${LONG / 1000} s (seen: ${[...seen].join(', ')}; now ${where})`);
    }
    await page.waitForTimeout(250);
  }
}

async function api(pathname) {
  return page.evaluate(async (p) => {
    const r = await fetch(`/api${p}`, { headers: { 'x-snapnest-console': '1' } });
    return r.json();
  }, pathname);
}

await page.goto(`${base}/#si=${encodeURIComponent(SI)}&view=backups`);
await page.locator('body[data-ready="true"]').waitFor();

let backupId;
await step(`create a backup of ${SI} and watch it reach Succeeded`, async () => {
  await page.getByRole('heading', { name: `Backup and Restoration of ${SI}` }).waitFor();
  assert.equal(await page.getByLabel('Service instance').inputValue(), SI);
  await page.getByLabel('Keep for (days)').fill('7');
  const created = await clickFor(page.getByRole('button', { name: 'Create Backup', exact: true }), 'POST', `/service-instances/${SI}/backups`);
  backupId = created.backup_id;
  assert.match(backupId, /^bk-/);
  const entry = await followedUntilEnd(backupId, 'Succeeded');
  const count = await entry.getByTestId('activity-count').innerText();
  const [done, total] = count.match(/(\d+) of (\d+)/).slice(1).map(Number);
  assert.ok(total > 0 && done === total, `the progress says ${count}`);
  assert.match(await entry.innerText(), /\d+(\.\d)? (GiB|MiB|KiB|TiB)/, 'the progress shows the bytes backed up');
  const row = page.getByTestId(`backup-row-${backupId}`);
  await row.locator('[data-status="Succeeded"]').first().waitFor();
  assert.match(await row.innerText(), new RegExp(`${total} of ${total}`));
  await noError();
  await screenshot('backup-succeeded');

  await row.getByRole('button', { name: `Details of ${backupId}` }).click();
  const detail = page.getByTestId('backup-detail');
  await detail.getByRole('heading', { name: `Backup point ${backupId}` }).waitFor();
  const resources = detail.getByTestId('backup-resources').locator('tbody tr');
  assert.equal(await resources.count(), total, 'one row per resource');
  assert.equal(await detail.getByTestId('backup-resources').locator('tbody tr[data-status="Succeeded"]').count(), total);
  await screenshot('backup-detail');
});

let restoreId;
await step('restore it in place: plan, confirm, watch it reach Succeeded', async () => {
  const record = await api(`/backups/${backupId}`);
  const instances = [...new Set(record.items.map((i) => i.instance_id).filter(Boolean))];
  assert.ok(instances.length > 0, 'the backup holds instances');

  await page.getByTestId(`backup-row-${backupId}`).getByRole('button', { name: `Restore ${backupId}` }).click();
  const plan = page.getByTestId('restore-plan');
  await page.locator('[data-testid="restore-plan"][data-ready="true"]').waitFor();
  await plan.getByRole('heading', { name: `Restore ${backupId} in place: the plan` }).waitFor();
  const stops = await plan.getByTestId('plan-stop-instances').innerText();
  for (const i of instances) assert.ok(stops.includes(i), `the plan names ${i} among the instances that stop: ${stops}`);
  assert.ok((await plan.getByTestId('plan-volumes').locator('tbody tr').count()) > 0, 'the plan lists the volumes it replaces');
  await plan.scrollIntoViewIfNeeded();
  await screenshot('restore-plan');

  await plan.getByRole('button', { name: 'Restore in place…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  const words = await dialog.getByTestId('confirm-stops').innerText();
  assert.match(words, new RegExp(`will stop ${instances.length} EC2 instances? of ${SI}`), words);
  for (const i of instances) assert.ok(words.includes(i), `the confirmation names ${i}: ${words}`);
  await screenshot('restore-confirm');

  const started = await clickFor(dialog.getByRole('button', { name: 'Confirm', exact: true }), 'POST', `/backups/${backupId}/restores`);
  restoreId = started.restore_id;
  assert.match(restoreId, /^rs-/);
  assert.ok(await dialog.isHidden(), 'the dialog closed');
  await followedUntilEnd(restoreId, 'Succeeded');
  await noError();
  await screenshot('restore-succeeded');

  await page.getByTestId('tab-restores').click();
  const row = page.getByTestId(`restore-row-${restoreId}`);
  await row.locator('[data-status="Succeeded"]').first().waitFor();
  await row.getByRole('button', { name: `Details of ${restoreId}` }).click();
  const detail = page.getByTestId('restore-detail');
  await detail.getByRole('heading', { name: `Restore ${restoreId}` }).waitFor();
  const items = detail.getByTestId('restore-resources').locator('tbody tr');
  assert.ok((await items.count()) > 0);
  assert.equal(await detail.getByTestId('restore-resources').locator('tbody tr:not([data-status="Succeeded"])').count(), 0);
  await screenshot('restore-tasks');
});

await step('start another backup and cancel it from the Jobs tab while it runs', async () => {
  await page.getByTestId('tab-backups').click();
  await page.getByRole('heading', { name: `Backup and Restoration of ${SI}` }).waitFor();
  const created = await clickFor(page.getByRole('button', { name: 'Create Backup', exact: true }), 'POST', `/service-instances/${SI}/backups`);
  const id = created.backup_id;
  await page.getByTestId('tab-jobs').click();
  const row = page.getByTestId(`job-row-${id}`);
  await row.waitFor();
  const status = await row.getAttribute('data-status');
  if (TERMINAL.includes(status)) {
    throw new Error(`backup ${id} ended ${status} before it could be cancelled: make the simulated snapshots slower (SNAPNEST_SIM_SNAPSHOT_SECONDS)`);
  }
  await row.getByRole('button', { name: `Cancel ${id}` }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), new RegExp(`Cancel backup ${id}\\?`));
  await screenshot('cancel-confirm');
  await clickFor(dialog.getByRole('button', { name: 'Cancel job', exact: true }), 'POST', `/jobs/${id}/cancel`);
  await page.locator(`[data-testid="job-row-${id}"][data-status="Cancelled"]`).waitFor({ timeout: LONG });
  assert.equal(await row.getByRole('button', { name: `Cancel ${id}` }).count(), 0, 'a cancelled job has no Cancel button');
  await followedUntilEnd(id, 'Cancelled');
  await noError();
  await screenshot('job-cancelled');
});

await step(`create a policy, attach ${SI}, suspend and resume it`, async () => {
  await page.getByTestId('tab-policies').click();
  const name = `console-test-${Date.now()}`;
  const form = page.getByTestId('policy-form');
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Every').fill('1');
  await form.getByLabel('Interval unit').selectOption('days');
  // Tomorrow 02:00 UTC: the schedule runner takes no backup during the test.
  const first = new Date(Date.now() + 86400000);
  const day = first.toISOString().slice(0, 10);
  await form.getByLabel('First run (UTC)').fill(`${day}T02:00`);
  await form.getByLabel('Keep each point (days)').fill('7');
  const policy = await clickFor(form.getByRole('button', { name: 'Create policy' }), 'POST', '/policies');
  assert.equal(policy.name, name);
  assert.equal(policy.start_time, `${day}T02:00:00Z`);
  const id = policy.policy_id;
  const row = page.getByTestId(`policy-row-${id}`);
  await page.locator(`[data-testid="policy-row-${id}"][data-state="active"]`).waitFor();
  assert.match(await row.innerText(), /every 1 day/);

  await clickFor(row.getByRole('button', { name: `Attach ${SI} to ${name}` }), 'POST', `/policies/${id}/targets`);
  await row.getByTestId('policy-targets').getByText(SI, { exact: true }).waitFor();
  await screenshot('policy-attached');

  await clickFor(row.getByRole('button', { name: `Suspend ${name}` }), 'POST', `/policies/${id}/suspend`);
  await page.locator(`[data-testid="policy-row-${id}"][data-state="suspended"]`).waitFor();
  assert.equal(await row.locator('.badge').first().innerText(), 'suspended');
  await screenshot('policy-suspended');

  await clickFor(row.getByRole('button', { name: `Resume ${name}` }), 'POST', `/policies/${id}/resume`);
  await page.locator(`[data-testid="policy-row-${id}"][data-state="active"]`).waitFor();
  await noError();
  await screenshot('policy-resumed');
});

await step('capacity, and an error of the API shown as it is', async () => {
  await page.getByTestId('tab-capacity').click();
  const points = page.getByTestId('capacity-points').locator('dd');
  await points.waitFor();
  assert.ok(Number(await points.innerText()) >= 1, 'the succeeded point counts');
  assert.match(await page.getByTestId('capacity-bytes').innerText(), /\d/);
  await screenshot('capacity');

  // A service instance nothing carries the tag of: the API's 404 and its message, shown.
  const missing = 'si-console-missing';
  await page.getByLabel('Service instance').fill(missing);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByTestId('tab-backups').click();
  await page.getByRole('heading', { name: `Backup and Restoration of ${missing}` }).waitFor();
  await page.getByRole('button', { name: 'Create Backup', exact: true }).click();
  const banner = page.getByRole('alert');
  await banner.waitFor();
  const text = await banner.innerText();
  assert.match(text, /404 \w+/, text);
  assert.ok(text.includes(missing), text);
  await screenshot('error-shown');
  assert.ok(new URL(page.url()).hash.includes(`si=${missing}`), 'the service instance is in the URL');
});

await browser.close();
if (problems.length) {
  console.error(`FAILED: the page reported problems:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`console: ${stepNo} steps passed; screenshots in ${artifacts}`);
