// snapnest console: plain JavaScript over the snapnest HTTP API, which `snapnest console`
// forwards from /api/ (signed with the user's credentials when deployed). No framework, no
// build step; every value from the API is put in the page as text, never as HTML.
'use strict';

const API = '/api';
const POLL_MS = 1000; // a followed backup or restore is read again every second
const REFRESH_MS = 3000; // the list on screen, while something in it runs
const TERMINAL = new Set(['Succeeded', 'PartiallyFailed', 'Failed', 'Cancelled', 'Expired', 'RolledBack']);
const RESTORABLE = new Set(['Succeeded', 'PartiallyFailed']);
const VIEWS = ['backups', 'restores', 'jobs', 'policies', 'capacity'];

const state = {
  si: 'si-demo',
  view: 'backups',
  backup: null, // the backup point whose detail is open
  restore: null, // the restore whose detail is open
  follows: new Map(), // id -> followed backup or restore
  lists: {}, // name -> {next_token, items, key} of the lists on screen
  loading: {},
};

// ---------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);

/** Builds an element: h('td', {class: 'x', title: 't'}, 'text', child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'hidden' || k === 'disabled') el[k] = true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function srOnly(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
function bytes(n) {
  if (n === null || n === undefined) return '—';
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${UNITS[u]}`;
}

/** An RFC 3339 time as "2026-11-01 02:00:00 UTC" in a <time> element. */
function time(ts, empty = '—') {
  if (!ts) return empty;
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  const [date, clock] = d.toISOString().replace(/\.\d+Z$/, '').split('T');
  // Wraps, if it must, only between the date and the time.
  return h('time', { datetime: ts }, h('span', { class: 'nowrap' }, date), ' ', h('span', { class: 'nowrap' }, `${clock} UTC`));
}

function timeText(ts) {
  const t = time(ts);
  return typeof t === 'string' ? t : t.textContent;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} days`;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many || `${one}s`}`;
}

/** "a, b and c" */
function words(list) {
  if (list.length <= 1) return list.join('');
  return `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`;
}

function token(prefix) {
  const bytesArr = new Uint8Array(8);
  crypto.getRandomValues(bytesArr);
  return `${prefix}-${Array.from(bytesArr, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

const STATUS_CLASS = {
  Pending: 'pending',
  Running: 'running',
  Succeeded: 'ok',
  PartiallyFailed: 'warn',
  Failed: 'bad',
  Cancelled: 'neutral',
  Expired: 'neutral',
  RollingBack: 'warn',
  RolledBack: 'bad',
  active: 'ok',
  suspended: 'neutral',
};

/**
 * A status badge. With a cause, the cause is the badge's tooltip (as the seeds' "move the
 * pointer over the status") and text for screen readers, and the badge can be focused.
 */
function badge(status, cause) {
  const attrs = { class: `badge badge-${STATUS_CLASS[status] || 'neutral'}`, dataset: { status: status || '' } };
  if (cause) {
    attrs.title = cause;
    attrs.tabindex = '0';
    attrs.class += ' has-cause';
  }
  return h('span', attrs, status || '—', cause ? srOnly(` — cause: ${cause}`) : null);
}

function causeOf(summary, fallback) {
  if (!summary) return fallback || null;
  const parts = [];
  if (summary.cause) parts.push(summary.cause);
  for (const c of summary.causes || []) if (!parts.includes(c)) parts.push(c);
  if (!parts.length && fallback) parts.push(fallback);
  return parts.length ? parts.join('\n') : null;
}

function doneOf(summary) {
  if (!summary || !summary.resources) return null;
  const r = summary.resources;
  return { done: r.total - r.pending - r.running, total: r.total, r };
}

function progressBar(done, total, label) {
  return h('progress', { max: Math.max(total, 1), value: Math.min(done, total), 'aria-label': label });
}

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API through the console's /api/; an answer that is not 2xx throws ApiError. */
async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json', 'x-snapnest-console': '1' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, 'Unreachable', `the console could not reach the API (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const code = (data && data.error) || `HTTP ${res.status}`;
    const message = (data && data.message) || text.trim() || res.statusText || 'no message';
    throw new ApiError(res.status, code, message);
  }
  if (data === null) throw new ApiError(res.status, 'NotJson', `${method} ${path} answered something that is not JSON`);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------
// Errors: one banner, role=alert, with the API's code and message

function showError(what, err) {
  const banner = $('error');
  $('error-title').textContent = what;
  if (err instanceof ApiError) {
    $('error-code').textContent = err.status ? `${err.status} ${err.code}` : err.code;
    $('error-message').textContent = err.message;
  } else {
    $('error-code').textContent = '';
    $('error-message').textContent = String((err && err.message) || err);
  }
  banner.hidden = false;
  banner.dataset.code = (err && err.code) || '';
}

function clearError() {
  $('error').hidden = true;
}

// ---------------------------------------------------------------------------------------
// Where we are: the hash (#si=…&view=…&backup=…&restore=…) and localStorage

function readLocation() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  let si = params.get('si');
  if (!si) {
    try {
      si = localStorage.getItem('snapnest.si');
    } catch {
      si = null;
    }
  }
  state.si = si || 'si-demo';
  state.view = VIEWS.includes(params.get('view')) ? params.get('view') : 'backups';
  state.backup = params.get('backup');
  state.restore = params.get('restore');
}

function hashFor(changes) {
  const next = { si: state.si, view: state.view, backup: state.backup, restore: state.restore, ...changes };
  const params = new URLSearchParams();
  params.set('si', next.si);
  params.set('view', next.view);
  if (next.backup && next.view === 'backups') params.set('backup', next.backup);
  if (next.restore && next.view === 'restores') params.set('restore', next.restore);
  return `#${params.toString()}`;
}

function go(changes) {
  const hash = hashFor(changes);
  if (location.hash === hash) render();
  else location.hash = hash; // hashchange renders
}

function render() {
  const before = state.si;
  readLocation();
  if (before !== state.si) closePlan();
  try {
    localStorage.setItem('snapnest.si', state.si);
  } catch {
    /* private mode: the hash still remembers it */
  }
  const input = $('si-input');
  if (document.activeElement !== input) input.value = state.si;
  for (const el of document.querySelectorAll('.si-name')) el.textContent = state.si;
  document.title = `${state.si} · ${document.querySelector(`nav.tabs a[data-view="${state.view}"]`).textContent} · snapnest`;
  for (const a of document.querySelectorAll('nav.tabs a')) {
    a.href = hashFor({ view: a.dataset.view, backup: null, restore: null });
    if (a.dataset.view === state.view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== state.view;
  load(state.view, { fresh: true });
}

// ---------------------------------------------------------------------------------------
// Loading the views

function load(view, opts = {}) {
  const loaders = {
    backups: loadBackups,
    restores: loadRestores,
    jobs: loadJobs,
    policies: loadPolicies,
    capacity: loadCapacity,
  };
  return loaders[view](opts);
}

/** Runs one load of a kind at a time; a refresh asked meanwhile runs after it. */
async function once(name, fn) {
  if (state.loading[name]) {
    state.loading[name].again = true;
    return;
  }
  state.loading[name] = { again: false };
  try {
    await fn();
  } finally {
    const again = state.loading[name].again;
    state.loading[name] = null;
    if (again) once(name, fn);
  }
}

/**
 * A paged list: the first page, or the next one appended (`more`). `key` names what the
 * list shows (the service instance, the filters); a new key starts again.
 */
async function pagedList(name, key, fetchPage, more) {
  let list = state.lists[name];
  if (!list || list.key !== key || !more) {
    const page = await fetchPage(null);
    // A refresh keeps as many items as were shown (pages already loaded are read again).
    list = { key, items: page.items, next_token: page.next_token };
    const wanted = state.lists[name] && state.lists[name].key === key ? state.lists[name].items.length : 0;
    while (list.next_token && list.items.length < wanted) {
      const next = await fetchPage(list.next_token);
      list.items = list.items.concat(next.items);
      list.next_token = next.next_token;
    }
  } else if (list.next_token) {
    const next = await fetchPage(list.next_token);
    list = { key, items: list.items.concat(next.items), next_token: next.next_token };
  }
  state.lists[name] = list;
  return list;
}

/** Replaces a tbody's rows only when what they show changed (keeps focus otherwise). */
function fillBody(tbody, items, row, signature) {
  const sig = JSON.stringify(signature);
  if (tbody.dataset.sig === sig) return;
  tbody.dataset.sig = sig;
  const focused = document.activeElement && tbody.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  tbody.replaceChildren(...items.map(row));
  if (focused) {
    const again = tbody.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// --- Backups ---------------------------------------------------------------------------

function loadBackups({ more = false } = {}) {
  return once('backups', async () => {
    const si = state.si;
    let list;
    try {
      list = await pagedList('backups', si, (t) => api('GET', `/service-instances/${enc(si)}/backups${query({ next_token: t })}`), more);
    } catch (e) {
      showError(`Could not list the backup points of ${si}`, e);
      return;
    }
    if (si !== state.si) return;
    fillBody($('backups-body'), list.items, backupRow, list.items);
    $('backups-empty').hidden = list.items.length > 0;
    $('backups-more').hidden = !list.next_token;
    // What runs is followed live, also when this page did not start it.
    for (const b of list.items) if (!TERMINAL.has(b.status)) follow('backup', b.backup_id);
    if (state.backup && state.view === 'backups') showBackup(state.backup);
    else $('backup-detail').hidden = true;
  });
}

function backupRow(b) {
  const progress = doneOf(b.summary);
  const replication = b.replication_region
    ? [b.replication_region, ': ', badge(b.replication_status || 'Pending')]
    : 'off';
  const restorable = RESTORABLE.has(b.status) && !b.damaged;
  return h(
    'tr',
    { dataset: { testid: `backup-row-${b.backup_id}`, backupId: b.backup_id, status: b.status } },
    h(
      'th',
      { scope: 'row' },
      h('code', {}, b.backup_id),
      h('span', { class: 'tag' }, b.trigger === 'safety_backup' ? 'safety backup' : b.trigger),
      b.damaged ? h('span', { class: 'tag tag-bad', title: 'A snapshot was deleted outside snapnest' }, 'damaged') : null,
    ),
    h('td', {}, badge(b.status, TERMINAL.has(b.status) ? causeOf(b.summary) : null)),
    h('td', { class: 'nowrap' }, progress ? `${progress.done} of ${progress.total}` : '—'),
    h('td', {}, time(b.started_at)),
    h('td', {}, time(b.finished_at)),
    h('td', { class: 'nowrap' }, bytes(b.summary ? b.summary.bytes : b.snapshot_bytes)),
    h('td', {}, b.expires_at ? time(b.expires_at) : 'never'),
    h('td', {}, replication),
    h(
      'td',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          dataset: { action: 'details', focusKey: `details-${b.backup_id}` },
          'aria-label': `Details of ${b.backup_id}`,
          onclick: () => go({ view: 'backups', backup: b.backup_id }),
        },
        'Details',
      ),
      h(
        'button',
        {
          type: 'button',
          dataset: { action: 'restore', focusKey: `restore-${b.backup_id}` },
          'aria-label': `Restore ${b.backup_id}`,
          disabled: !restorable,
          title: restorable ? null : b.damaged ? 'A snapshot of this point was deleted outside snapnest' : `A ${b.status} point cannot be restored`,
          onclick: () => openRestorePlan(b),
        },
        'Restore',
      ),
    ),
  );
}

async function createBackup(event) {
  event.preventDefault();
  clearError();
  const si = state.si;
  const days = Number($('retention-days').value);
  const button = event.submitter || document.querySelector('[data-testid="create-backup"]');
  button.disabled = true;
  try {
    const record = await api('POST', `/service-instances/${enc(si)}/backups`, {
      retention_days: days,
      client_token: token('console'),
    });
    follow('backup', record.backup_id, record);
    loadBackups();
  } catch (e) {
    showError(`Could not create a backup of ${si}`, e);
  } finally {
    button.disabled = false;
  }
}

async function showBackup(id) {
  const panel = $('backup-detail');
  let record;
  try {
    record = await api('GET', `/backups/${enc(id)}`);
  } catch (e) {
    showError(`Could not read backup point ${id}`, e);
    panel.hidden = true;
    return;
  }
  if (state.backup !== id) return;
  renderBackupDetail(record);
}

function renderBackupDetail(b) {
  const panel = $('backup-detail');
  const firstShow = panel.hidden || panel.dataset.id !== b.backup_id;
  panel.dataset.id = b.backup_id;
  panel.dataset.status = b.status;
  $('backup-detail-heading').textContent = `Backup point ${b.backup_id}`;
  const s = b.summary || {};
  const progress = doneOf(s);
  const cause = causeOf(s, b.error);
  const rep = b.replication;
  const facts = [
    ['Status', badge(b.status, TERMINAL.has(b.status) ? cause : null)],
    ['Where it stands', s.headline || '—'],
    cause && TERMINAL.has(b.status) ? ['Cause', h('span', { class: 'cause' }, cause)] : null,
    ['Resources done', progress ? `${progress.done} of ${progress.total}` : '—'],
    ['Size', bytes(s.bytes)],
    ['Started', time(b.started_at)],
    ['Ended', time(b.finished_at)],
    ['Duration', duration(s.duration_seconds)],
    ['Expires', b.expires_at ? time(b.expires_at) : 'never'],
    ['Trigger', b.trigger + (b.policy_id ? ` (policy ${b.policy_id})` : '')],
    ['Requested by', b.requested_by || '—'],
    ['Region', b.region],
    ['Remote replication', rep ? [rep.region, ': ', badge(rep.status), rep.expires_at ? [' · copies expire ', time(rep.expires_at)] : ' · copies never expire'] : 'off'],
    b.damaged ? ['Damaged', 'yes: a snapshot was deleted outside snapnest; a restore is refused'] : null,
    ['What next', s.next || '—'],
  ].filter(Boolean);
  const items = b.items || [];
  const body = [
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { dataset: { testid: 'backup-resources' } },
        h('caption', {}, `Resources of ${b.backup_id}. Move the pointer over a status to see why it failed.`),
        h(
          'thead',
          {},
          h('tr', {}, ['Resource', 'Kind', 'Instance', 'Device', 'Snapshot', 'Consistent group', 'Progress', 'Size', 'Status'].map((t) => h('th', { scope: 'col' }, t))),
        ),
        h(
          'tbody',
          {},
          items.map((i) =>
            h(
              'tr',
              { dataset: { testid: `resource-${i.resource_id}`, status: i.status } },
              h('th', { scope: 'row' }, h('code', {}, i.resource_id)),
              h('td', {}, i.kind),
              h('td', {}, i.instance_id ? h('code', {}, i.instance_id) : '—'),
              h('td', {}, i.device || '—'),
              h('td', {}, i.snapshot_id ? h('code', { class: 'wrap' }, i.snapshot_id) : '—'),
              h('td', {}, i.kind === 'volume' ? (i.consistent_group ? 'yes' : 'no') : '—'),
              h('td', { class: 'nowrap' }, progressBar(i.progress, 100, `${i.resource_id} progress`), ` ${i.progress}%`),
              h('td', { class: 'nowrap' }, bytes(i.size_bytes)),
              h('td', {}, badge(i.status, i.error), i.released ? h('span', { class: 'tag', title: 'The snapshot is used elsewhere; snapnest no longer manages it' }, 'released') : null),
            ),
          ),
        ),
      ),
    ),
  ];
  if (rep && rep.items && rep.items.length) {
    body.push(
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h('caption', {}, `Copies in ${rep.region}`),
          h('thead', {}, h('tr', {}, ['Resource', 'Copy', 'Progress', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            {},
            rep.items.map((i) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row' }, h('code', {}, i.resource_id)),
                h('td', {}, i.replica_snapshot_id ? h('code', {}, i.replica_snapshot_id) : '—'),
                h('td', {}, `${i.progress}%`),
                h('td', {}, badge(i.status, i.error)),
              ),
            ),
          ),
        ),
      ),
    );
  }
  if (b.skipped && b.skipped.length) {
    body.push(h('p', {}, 'Not in this point: '), h('ul', {}, b.skipped.map((s2) => h('li', {}, h('code', {}, s2.resource_id), ` (${s2.kind}): ${s2.reason}`))));
  }
  if (TERMINAL.has(b.status) && b.status !== 'Expired' && b.status !== 'Cancelled') {
    body.push(retentionForm(b));
  }
  $('backup-detail-body').replaceChildren(...body);
  panel.hidden = false;
  if (firstShow) panel.focus();
}

function retentionForm(b) {
  const input = h('input', { type: 'number', id: 'extend-days', min: 1, max: 65536, value: 30, required: true });
  const form = h(
    'form',
    {
      class: 'toolbar',
      'aria-label': 'Retention',
      onsubmit: async (e) => {
        e.preventDefault();
        await changeRetention(b.backup_id, { extend_days: Number(input.value) });
      },
    },
    h('label', { for: 'extend-days' }, 'Extend retention by (days)'),
    input,
    h('button', { type: 'submit' }, 'Extend'),
    b.expires_at
      ? h('button', { type: 'button', onclick: () => changeRetention(b.backup_id, { never_expire: true }) }, 'Never expire')
      : null,
  );
  return form;
}

async function changeRetention(id, body) {
  clearError();
  try {
    const record = await api('PATCH', `/backups/${enc(id)}/retention`, body);
    renderBackupDetail(record);
    loadBackups();
  } catch (e) {
    showError(`Could not change the retention of ${id}`, e);
  }
}

// --- Restore: the plan (dry run), the confirmation, the restore -----------------------

let planFor = null; // the backup listing whose plan is shown
let plan = null; // the dry run's answer

function restoreRequest(b, dryRun) {
  const body = {
    mode: 'in_place',
    safety_backup: $('restore-safety').checked,
    on_failure: $('restore-on-failure').value,
  };
  if (b.status === 'PartiallyFailed') body.allow_partial = true;
  if (dryRun) body.dry_run = true;
  return body;
}

async function openRestorePlan(b) {
  clearError();
  if (state.backup) go({ backup: null });
  planFor = b;
  plan = null;
  const panel = $('restore-plan');
  $('restore-plan-heading').textContent = `Restore ${b.backup_id} in place: the plan`;
  $('restore-plan-body').replaceChildren(h('p', {}, 'Asking the API for the plan (a dry run: nothing is changed)…'));
  $('restore-start').disabled = true;
  panel.hidden = false;
  panel.dataset.backupId = b.backup_id;
  panel.dataset.ready = 'false';
  panel.focus();
  await refreshPlan();
}

async function refreshPlan() {
  const b = planFor;
  if (!b) return;
  $('restore-start').disabled = true;
  $('restore-plan').dataset.ready = 'false';
  let answer;
  try {
    answer = await api('POST', `/backups/${enc(b.backup_id)}/restores`, restoreRequest(b, true));
  } catch (e) {
    $('restore-plan-body').replaceChildren(h('p', { class: 'cause' }, `No plan: ${e.code}: ${e.message}`));
    showError(`Could not plan a restore of ${b.backup_id}`, e);
    return;
  }
  if (planFor !== b) return;
  plan = answer;
  renderPlan(answer);
  $('restore-start').disabled = false;
  $('restore-plan').dataset.ready = 'true';
}

function renderPlan(p) {
  const stops = p.stop_instances || [];
  const vols = p.volumes || [];
  const dbs = p.databases || [];
  const body = [
    h(
      'p',
      {},
      `Service instance ${p.service_instance_id}, region ${p.region}. `,
      p.safety_backup ? 'A safety backup of the current state is taken first. ' : 'No safety backup is taken. ',
      p.on_failure === 'keep' ? 'On a failure only what failed is put back.' : 'On a failure everything is put back.',
    ),
    h('h4', {}, 'Instances that will stop'),
    stops.length
      ? h(
          'ul',
          { dataset: { testid: 'plan-stop-instances' } },
          stops.map((i) => h('li', { dataset: { instance: i } }, h('code', {}, i), ' — stopped, then started again')),
        )
      : h('p', { dataset: { testid: 'plan-stop-instances' } }, 'None: no instance runs that the restore must stop.'),
  ];
  if (vols.length) {
    body.push(
      h('h4', {}, 'Volumes replaced'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { dataset: { testid: 'plan-volumes' } },
          h('caption', {}, 'Each device gets a new volume made from its snapshot; the volume there now is detached and kept.'),
          h('thead', {}, h('tr', {}, ['Instance', 'Device', 'Volume there now (kept)', 'New volume from', 'Size', 'Type'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            {},
            vols.map((v) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row' }, v.instance_id ? h('code', {}, v.instance_id) : '—'),
                h('td', {}, v.device || '—'),
                h('td', {}, v.replaces_volume_id ? h('code', {}, v.replaces_volume_id) : 'none (the device is empty)'),
                h('td', {}, h('code', {}, v.snapshot_id)),
                h('td', {}, bytes(v.size_bytes)),
                h('td', {}, volumeType(v.settings)),
              ),
            ),
          ),
        ),
      ),
    );
  }
  if (dbs.length) {
    body.push(
      h('h4', {}, 'Databases replaced'),
      h(
        'ul',
        { dataset: { testid: 'plan-databases' } },
        dbs.map((d) =>
          h(
            'li',
            {},
            h('code', {}, d.db_id),
            ` is restored from ${d.snapshot_id} as ${d.restored_as}`,
            d.current_renamed_to ? `; the current one is renamed to ${d.current_renamed_to} and kept` : '',
            `; it ends as ${d.final_id}.`,
          ),
        ),
      ),
    );
  }
  if (p.skipped && p.skipped.length) {
    body.push(
      h('h4', {}, 'Left as they are'),
      h('ul', {}, p.skipped.map((s) => h('li', {}, h('code', {}, s.resource_id), ` (${s.kind}): ${s.reason}`))),
    );
  }
  if (p.replaced_kept_until) body.push(h('p', {}, 'What is replaced is kept until ', time(p.replaced_kept_until), ' and can be put back until then.'));
  body.push(h('p', { class: 'help' }, `The restore will be ${p.restore_id}.`));
  $('restore-plan-body').replaceChildren(...body);
}

function volumeType(settings) {
  if (!settings) return '—';
  const parts = [settings.volume_type || 'default'];
  if (settings.iops) parts.push(`${settings.iops} IOPS`);
  if (settings.throughput) parts.push(`${settings.throughput} MiB/s`);
  if (settings.encrypted) parts.push('encrypted');
  return parts.join(', ');
}

/** The confirmation, in words: what stops, what is replaced, what is kept. */
function planInWords(p) {
  const stops = p.stop_instances || [];
  const vols = (p.volumes || []).length;
  const dbs = (p.databases || []).map((d) => d.db_id);
  const lines = [];
  lines.push(
    h(
      'p',
      { class: 'stop-summary', dataset: { testid: 'confirm-stops' } },
      stops.length
        ? `This restore will stop ${plural(stops.length, 'EC2 instance')} of ${p.service_instance_id}: ${words(stops)}. They are started again when it ends.`
        : `This restore stops no instance of ${p.service_instance_id}.`,
    ),
  );
  const replaced = [];
  if (vols) replaced.push(plural(vols, 'volume'));
  if (dbs.length) replaced.push(`${plural(dbs.length, 'database')} (${words(dbs)})`);
  lines.push(
    h(
      'p',
      {},
      replaced.length ? `It replaces ${words(replaced)} with the contents of ${p.backup_id}` : `It replaces nothing`,
      p.safety_backup ? ', after taking a safety backup of the current state.' : ', without a safety backup.',
      p.replaced_kept_until ? ` What it replaces is kept until ${timeText(p.replaced_kept_until)}.` : '',
    ),
  );
  lines.push(h('p', { class: 'warning' }, 'During the restoration, do not perform operations on the service instance or modify data.'));
  return lines;
}

async function startRestore() {
  const b = planFor;
  const p = plan;
  if (!b || !p) return;
  const ok = await confirmDialog({
    title: `Restore ${b.backup_id} in place?`,
    body: planInWords(p),
    okLabel: 'Confirm',
  });
  if (!ok) return;
  clearError();
  $('restore-start').disabled = true;
  try {
    const record = await api('POST', `/backups/${enc(b.backup_id)}/restores`, {
      ...restoreRequest(b, false),
      client_token: token('console'),
    });
    closePlan();
    follow('restore', record.restore_id, record);
  } catch (e) {
    $('restore-start').disabled = false;
    showError(`Could not restore ${b.backup_id}`, e);
  }
}

function closePlan() {
  planFor = null;
  plan = null;
  $('restore-plan').hidden = true;
}

// --- Restoration tasks -----------------------------------------------------------------

function loadRestores({ more = false } = {}) {
  return once('restores', async () => {
    const si = state.si;
    let list;
    try {
      list = await pagedList('restores', si, (t) => api('GET', `/jobs${query({ kind: 'restore', limit: 100, next_token: t })}`), more);
    } catch (e) {
      showError('Could not list the restores', e);
      return;
    }
    if (si !== state.si) return;
    const mine = list.items.filter((j) => j.service_instance_id === si);
    fillBody($('restores-body'), mine, restoreRow, mine);
    $('restores-empty').hidden = mine.length > 0;
    $('restores-more').hidden = !list.next_token;
    for (const j of mine) if (!TERMINAL.has(j.status)) follow('restore', j.job_id);
    if (state.restore && state.view === 'restores') showRestore(state.restore);
    else $('restore-detail').hidden = true;
  });
}

function restoreRow(j) {
  return h(
    'tr',
    { dataset: { testid: `restore-row-${j.job_id}`, restoreId: j.job_id, status: j.status } },
    h('th', { scope: 'row' }, h('code', {}, j.job_id)),
    h('td', {}, badge(j.status)),
    h('td', {}, j.backup_id ? h('code', {}, j.backup_id) : '—'),
    h('td', { class: 'nowrap' }, `${j.progress.done} of ${j.progress.total}`),
    h('td', {}, time(j.started_at)),
    h('td', {}, time(j.finished_at)),
    h(
      'td',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          dataset: { focusKey: `rdetails-${j.job_id}` },
          'aria-label': `Details of ${j.job_id}`,
          onclick: () => go({ view: 'restores', restore: j.job_id }),
        },
        'Details',
      ),
    ),
  );
}

async function showRestore(id) {
  let record;
  try {
    record = await api('GET', `/restores/${enc(id)}`);
  } catch (e) {
    showError(`Could not read restore ${id}`, e);
    $('restore-detail').hidden = true;
    return;
  }
  if (state.restore !== id) return;
  renderRestoreDetail(record);
}

function renderRestoreDetail(r) {
  const panel = $('restore-detail');
  const firstShow = panel.hidden || panel.dataset.id !== r.restore_id;
  panel.dataset.id = r.restore_id;
  panel.dataset.status = r.status;
  $('restore-detail-heading').textContent = `Restore ${r.restore_id}`;
  const s = r.summary || {};
  const cause = causeOf(s, r.error);
  const progress = doneOf(s);
  const facts = [
    ['Status', badge(r.status, TERMINAL.has(r.status) ? cause : null)],
    ['Where it stands', s.headline || '—'],
    cause && TERMINAL.has(r.status) ? ['Cause', h('span', { class: 'cause' }, cause)] : null,
    ['Resources done', progress ? `${progress.done} of ${progress.total}` : '—'],
    ['Mode', r.mode.replace('_', ' ')],
    ['Phase', r.phase.replace(/_/g, ' ')],
    ['From backup point', h('code', {}, r.backup_id)],
    ['Safety backup', r.safety_backup ? (r.safety_backup_id ? h('code', {}, r.safety_backup_id) : 'being taken') : 'none'],
    ['Instances stopped', r.stopped_instance_ids && r.stopped_instance_ids.length ? words(r.stopped_instance_ids) : 'none'],
    ['Started', time(r.started_at)],
    ['Ended', time(r.finished_at)],
    ['Duration', duration(s.duration_seconds)],
    r.kept_until ? ['Replaced resources kept until', time(r.kept_until)] : null,
    r.rollback ? ['Roll-back', `${r.rollback.reason}: ${r.rollback.cause}${r.rollback.not_put_back.length ? `; not put back: ${r.rollback.not_put_back.join(', ')}` : ''}`] : null,
    ['Requested by', r.requested_by || '—'],
    ['What next', s.next || '—'],
  ].filter(Boolean);
  const body = [
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { dataset: { testid: 'restore-resources' } },
        h('caption', {}, `Resources of ${r.restore_id}. Move the pointer over a status to see why it failed.`),
        h('thead', {}, h('tr', {}, ['Resource', 'Kind', 'Instance', 'Device', 'New resource', 'Replaced', 'Step', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          r.items.map((i) =>
            h(
              'tr',
              { dataset: { status: i.status } },
              h('th', { scope: 'row' }, h('code', {}, i.resource_id)),
              h('td', {}, i.kind),
              h('td', {}, i.instance_id ? h('code', {}, i.instance_id) : '—'),
              h('td', {}, i.device || '—'),
              h('td', {}, i.new_resource_id ? h('code', {}, i.new_resource_id) : '—'),
              h('td', {}, i.replaced_resource_id ? [h('code', {}, i.replaced_resource_id), i.replaced_state ? ` (${i.replaced_state})` : ''] : '—'),
              h('td', {}, i.step.replace(/_/g, ' ')),
              h('td', {}, badge(i.status, i.error)),
            ),
          ),
        ),
      ),
    ),
  ];
  const canRollBack = r.mode === 'in_place' && r.status === 'Succeeded' && r.kept_until && new Date(r.kept_until) > new Date();
  if (canRollBack) {
    body.push(
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'danger', onclick: () => rollBack(r) }, 'Put the replaced resources back…'),
      ),
    );
  }
  $('restore-detail-body').replaceChildren(...body);
  panel.hidden = false;
  if (firstShow) panel.focus();
}

async function rollBack(r) {
  const ok = await confirmDialog({
    title: `Roll back ${r.restore_id}?`,
    body: [
      h(
        'p',
        {},
        `This stops ${r.stopped_instance_ids.length ? words(r.stopped_instance_ids) : 'the instances'} again and swaps back the volumes and databases ${r.restore_id} replaced; what it made is deleted.`,
      ),
    ],
    okLabel: 'Roll back',
  });
  if (!ok) return;
  clearError();
  try {
    const record = await api('POST', `/restores/${enc(r.restore_id)}/rollback`);
    follow('restore', record.restore_id, record);
    renderRestoreDetail(record);
  } catch (e) {
    showError(`Could not roll back ${r.restore_id}`, e);
  }
}

// --- Jobs ------------------------------------------------------------------------------

let replicationOf = new Map(); // backup id -> its replication job

function loadJobs({ more = false } = {}) {
  return once('jobs', async () => {
    const kind = $('jobs-kind').value;
    const status = $('jobs-status').value;
    let list;
    try {
      const [l, reps] = await Promise.all([
        pagedList('jobs', `${kind}|${status}`, (t) => api('GET', `/jobs${query({ kind, status, limit: 50, next_token: t })}`), more),
        api('GET', `/jobs${query({ kind: 'replication', limit: 100 })}`),
      ]);
      list = l;
      replicationOf = new Map(reps.items.map((j) => [j.backup_id, j]));
    } catch (e) {
      showError('Could not list the jobs', e);
      return;
    }
    const sig = [list.items, [...replicationOf.values()].map((j) => [j.job_id, j.status])];
    fillBody($('jobs-body'), list.items, jobRow, sig);
    $('jobs-empty').hidden = list.items.length > 0;
    $('jobs-more').hidden = !list.next_token;
  });
}

function jobRow(j) {
  const running = !TERMINAL.has(j.status);
  const cancellable = running && j.kind !== 'expiry';
  let remote = '—';
  if (j.kind === 'backup') {
    const rep = replicationOf.get(j.backup_id);
    remote = rep ? [rep.region || '', ': ', badge(rep.status)] : 'off';
  } else if (j.kind === 'replication') {
    remote = j.region ? `to ${j.region}` : '—';
  }
  return h(
    'tr',
    { dataset: { testid: `job-row-${j.job_id}`, jobId: j.job_id, status: j.status, kind: j.kind } },
    h('th', { scope: 'row' }, h('code', {}, j.job_id)),
    h('td', {}, j.kind),
    h('td', {}, badge(j.status)),
    h('td', {}, j.service_instance_id || '—'),
    h('td', { class: 'nowrap' }, progressBar(j.progress.done, j.progress.total, `${j.job_id} progress`), ` ${j.progress.done} of ${j.progress.total}`),
    h('td', {}, remote),
    h('td', {}, time(j.started_at)),
    h('td', {}, time(j.finished_at)),
    h(
      'td',
      { class: 'actions' },
      cancellable
        ? h(
            'button',
            {
              type: 'button',
              class: 'danger',
              dataset: { action: 'cancel', focusKey: `cancel-${j.job_id}` },
              'aria-label': `Cancel ${j.job_id}`,
              onclick: () => cancelJob(j),
            },
            'Cancel',
          )
        : null,
    ),
  );
}

async function cancelJob(j) {
  const keep = h('input', { type: 'checkbox', id: 'keep-snapshots', dataset: { testid: 'keep-snapshots' } });
  const what = {
    backup: 'The backup stops taking snapshots; the ones it already made are deleted unless you keep them.',
    replication: 'The copy stops; the copies already made are deleted unless you keep them.',
    restore: 'The restore stops. Once it stopped instances, everything it changed is put back and the instances are started again.',
  }[j.kind];
  const ok = await confirmDialog({
    title: `Cancel ${j.kind} ${j.job_id}?`,
    body: [h('p', {}, what)],
    extra: j.kind === 'restore' ? null : h('p', {}, h('label', {}, keep, ' Keep the snapshots it already made')),
    okLabel: 'Cancel job',
    cancelLabel: 'Keep it running',
  });
  if (!ok) return;
  clearError();
  try {
    await api('POST', `/jobs/${enc(j.job_id)}/cancel`, j.kind === 'restore' ? {} : { keep_snapshots: keep.checked });
  } catch (e) {
    showError(`Could not cancel ${j.job_id}`, e);
  }
  loadJobs();
}

// --- Policies --------------------------------------------------------------------------

function loadPolicies({ more = false } = {}) {
  return once('policies', async () => {
    let list;
    try {
      list = await pagedList('policies', 'all', (t) => api('GET', `/policies${query({ next_token: t })}`), more);
    } catch (e) {
      showError('Could not list the policies', e);
      return;
    }
    fillBody($('policies-body'), list.items, policyRow, [state.si, list.items]);
    $('policies-empty').hidden = list.items.length > 0;
    $('policies-more').hidden = !list.next_token;
  });
}

function schedule(p) {
  const every = p.interval_hours ? plural(p.interval_hours, 'hour') : plural(p.interval_days, 'day');
  return [`every ${every} from `, time(p.start_time)];
}

function lastRun(run) {
  if (!run) return 'not yet';
  if (run.skipped) return [time(run.slot), ': ', h('span', { class: 'cause' }, run.skipped)];
  const outcomes = run.targets.map((t) => (t.error ? `${t.service_instance_id}: ${t.error}` : `${t.service_instance_id}: ${t.backup_id}`));
  return [time(run.slot), outcomes.length ? `: ${outcomes.join('; ')}` : ''];
}

function policyRow(p) {
  const attached = p.targets.includes(state.si);
  const targets = p.targets.length
    ? h(
        'ul',
        { class: 'plain' },
        p.targets.map((t) =>
          h(
            'li',
            {},
            h('code', {}, t),
            ' ',
            h(
              'button',
              {
                type: 'button',
                class: 'small',
                dataset: { action: 'detach', focusKey: `detach-${p.policy_id}-${t}` },
                'aria-label': `Detach ${t} from ${p.name}`,
                onclick: () => changeTargets(p, { detach: [t] }),
              },
              'Detach',
            ),
          ),
        ),
      )
    : 'none';
  return h(
    'tr',
    { dataset: { testid: `policy-row-${p.policy_id}`, policyId: p.policy_id, name: p.name, state: p.state } },
    h('th', { scope: 'row' }, p.name, h('br'), h('code', { class: 'small-id' }, p.policy_id)),
    h('td', {}, badge(p.state)),
    h('td', {}, schedule(p)),
    h('td', {}, plural(p.retention_days, 'day')),
    h('td', {}, p.destination_region ? `${p.destination_region}, ${p.destination_retention_days ? plural(p.destination_retention_days, 'day') : 'same retention'}` : 'off'),
    h('td', { dataset: { testid: 'policy-targets' } }, targets),
    h('td', {}, time(p.next_run_at)),
    h('td', {}, lastRun(p.last_run)),
    h(
      'td',
      { class: 'actions' },
      attached
        ? null
        : h(
            'button',
            {
              type: 'button',
              dataset: { action: 'attach', focusKey: `attach-${p.policy_id}` },
              'aria-label': `Attach ${state.si} to ${p.name}`,
              onclick: () => changeTargets(p, { attach: [state.si] }),
            },
            `Attach ${state.si}`,
          ),
      p.state === 'active'
        ? h(
            'button',
            {
              type: 'button',
              dataset: { action: 'suspend', focusKey: `suspend-${p.policy_id}` },
              'aria-label': `Suspend ${p.name}`,
              onclick: () => policyAction(p, 'suspend'),
            },
            'Suspend',
          )
        : h(
            'button',
            {
              type: 'button',
              dataset: { action: 'resume', focusKey: `resume-${p.policy_id}` },
              'aria-label': `Resume ${p.name}`,
              onclick: () => policyAction(p, 'resume'),
            },
            'Resume',
          ),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          dataset: { action: 'delete', focusKey: `delete-${p.policy_id}` },
          'aria-label': `Delete ${p.name}`,
          onclick: () => deletePolicy(p),
        },
        'Delete',
      ),
    ),
  );
}

async function createPolicy(event) {
  event.preventDefault();
  clearError();
  const n = Number($('policy-interval').value);
  const body = { name: $('policy-name').value.trim(), retention_days: Number($('policy-retention').value) };
  if ($('policy-interval-unit').value === 'hours') body.interval_hours = n;
  else body.interval_days = n;
  const start = $('policy-start').value;
  if (start) body.start_time = `${start.length === 16 ? `${start}:00` : start}Z`;
  const region = $('policy-region').value.trim();
  if (region) body.destination_region = region;
  const regionDays = $('policy-region-retention').value;
  if (regionDays) body.destination_retention_days = Number(regionDays);
  if ($('policy-attach').checked) body.targets = [state.si];
  try {
    await api('POST', '/policies', body);
    $('policy-form').reset();
  } catch (e) {
    showError('Could not create the policy', e);
  }
  loadPolicies();
}

async function changeTargets(p, body) {
  clearError();
  try {
    await api('POST', `/policies/${enc(p.policy_id)}/targets`, body);
  } catch (e) {
    showError(`Could not change the service instances of ${p.name}`, e);
  }
  loadPolicies();
}

async function policyAction(p, action) {
  clearError();
  try {
    await api('POST', `/policies/${enc(p.policy_id)}/${action}`);
  } catch (e) {
    showError(`Could not ${action} ${p.name}`, e);
  }
  loadPolicies();
}

async function deletePolicy(p) {
  const ok = await confirmDialog({
    title: `Delete policy ${p.name}?`,
    body: [h('p', {}, `Its service instances (${p.targets.length ? words(p.targets) : 'none'}) are no longer backed up on a schedule; their backup points stay.`)],
    okLabel: 'Delete policy',
  });
  if (!ok) return;
  clearError();
  try {
    await api('DELETE', `/policies/${enc(p.policy_id)}`);
  } catch (e) {
    showError(`Could not delete ${p.name}`, e);
  }
  loadPolicies();
}

// --- Capacity --------------------------------------------------------------------------

function loadCapacity() {
  return once('capacity', async () => {
    const si = state.si;
    let c;
    try {
      c = await api('GET', `/service-instances/${enc(si)}/capacity`);
    } catch (e) {
      showError(`Could not read the capacity of ${si}`, e);
      return;
    }
    if (si !== state.si) return;
    const card = (label, value, testid) => h('div', { class: 'card', dataset: { testid } }, h('dt', {}, label), h('dd', {}, value));
    $('capacity').replaceChildren(
      card('Snapshot storage', bytes(c.snapshot_bytes), 'capacity-bytes'),
      card('Copies in other regions', bytes(c.replica_bytes), 'capacity-replica-bytes'),
      card('Backup points holding snapshots', String(c.backup_points), 'capacity-points'),
    );
  });
}

// ---------------------------------------------------------------------------------------
// Following a backup or restore until it ends: GET every second, shown in the live region

function follow(kind, id, record) {
  if (state.follows.has(id)) return;
  const entry = { kind, id, done: false, el: null, last: '' };
  entry.el = h('div', { class: 'activity', dataset: { testid: `activity-${id}`, id, kind, status: 'Pending' } });
  state.follows.set(id, entry);
  $('activity-empty').hidden = true;
  $('activity').prepend(entry.el);
  // Keep the last few finished ones visible.
  const finished = [...state.follows.values()].filter((e) => e.done);
  for (const old of finished.slice(0, Math.max(0, finished.length - 3))) {
    old.el.remove();
    state.follows.delete(old.id);
  }
  if (record) showFollowed(entry, record);
  tick(entry);
}

async function tick(entry) {
  const path = entry.kind === 'backup' ? `/backups/${enc(entry.id)}` : `/restores/${enc(entry.id)}`;
  let record = null;
  try {
    record = await api('GET', path);
  } catch (e) {
    entry.el.dataset.error = e.code;
    const note = entry.el.querySelector('.follow-error') || entry.el.appendChild(h('p', { class: 'follow-error cause' }));
    note.textContent = `Could not read it: ${e.code}: ${e.message}`;
    if (e.status === 404) {
      entry.done = true;
      return;
    }
  }
  if (record) {
    const before = entry.el.dataset.status;
    showFollowed(entry, record);
    if (before !== record.status || TERMINAL.has(record.status)) onChange(entry, record);
    if (TERMINAL.has(record.status)) {
      entry.done = true;
      return;
    }
  }
  setTimeout(() => tick(entry), POLL_MS);
}

function showFollowed(entry, r) {
  const s = r.summary || {};
  const progress = doneOf(s) || { done: 0, total: 0 };
  const cause = TERMINAL.has(r.status) ? causeOf(s, r.error) : null;
  const label = entry.kind === 'backup' ? `Backup ${r.backup_id} of ${r.service_instance_id}` : `Restore ${r.restore_id} of ${r.backup_id}`;
  const sig = JSON.stringify([r.status, s.headline, progress, s.bytes, cause]);
  entry.el.dataset.status = r.status;
  entry.el.dataset.done = String(progress.done);
  entry.el.dataset.total = String(progress.total);
  if (entry.last === sig) {
    const d = entry.el.querySelector('.duration');
    if (d) d.textContent = duration(s.duration_seconds);
    return;
  }
  entry.last = sig;
  const note = entry.el.querySelector('.follow-error');
  const lines = [
    h('p', { class: 'activity-title' }, h('strong', {}, label), ' ', badge(r.status, cause), ' ', h('span', { class: 'headline' }, s.headline || '')),
    h(
      'p',
      {},
      progressBar(progress.done, progress.total, `${label} progress`),
      ' ',
      h('span', { dataset: { testid: 'activity-count' } }, `${progress.done} of ${progress.total} resources done`),
      ` · ${bytes(s.bytes)} · `,
      h('span', { class: 'duration' }, duration(s.duration_seconds)),
    ),
  ];
  if (cause) lines.push(h('p', { class: 'cause' }, cause));
  entry.el.replaceChildren(...lines);
  if (note && !TERMINAL.has(r.status)) note.remove();
}

function onChange(entry, record) {
  if (entry.kind === 'backup') {
    if (record.service_instance_id === state.si && state.view === 'backups') loadBackups();
    if (state.backup === entry.id && state.view === 'backups') renderBackupDetail(record);
  } else {
    if (state.view === 'restores') loadRestores();
    if (state.restore === entry.id && state.view === 'restores') renderRestoreDetail(record);
    // A restore's safety backup lands in the backups list.
    if (state.view === 'backups') loadBackups();
  }
  if (state.view === 'jobs') loadJobs();
  if (state.view === 'capacity') loadCapacity();
}

/** The view on screen is read again while something in it runs. */
function refreshLoop() {
  if (document.visibilityState === 'visible') {
    const running = [...state.follows.values()].some((e) => !e.done);
    if (state.view === 'jobs') loadJobs();
    else if (state.view === 'restores' && running) loadRestores();
    else if (state.view === 'backups' && running) loadBackups();
    else if (state.view === 'restores' && state.restore) showRestore(state.restore);
  }
  setTimeout(refreshLoop, REFRESH_MS);
}

// ---------------------------------------------------------------------------------------
// The confirmation dialog (<dialog>, modal)

function confirmDialog({ title, body, extra = null, okLabel = 'Confirm', cancelLabel = 'Cancel' }) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-body').replaceChildren(...body);
  $('confirm-extra').replaceChildren(...(extra ? [extra] : []));
  $('confirm-ok').textContent = okLabel;
  $('confirm-cancel').textContent = cancelLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

// ---------------------------------------------------------------------------------------

async function showEndpoint() {
  try {
    const res = await fetch('/console-info', { headers: { accept: 'application/json' } });
    if (!res.ok) return;
    const info = await res.json();
    const auth = { iam: 'signed with your AWS credentials', jwt: 'with your bearer token', none: 'no authentication' }[info.auth] || info.auth;
    document.querySelector('footer.bottom p').replaceChildren(
      'snapnest console · API ',
      h('code', { dataset: { testid: 'endpoint' } }, info.endpoint),
      ` (${auth})`,
    );
  } catch {
    /* an older console server: the footer stays as it is */
  }
}

function init() {
  $('si-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('si-input');
    if (!input.checkValidity()) {
      input.reportValidity();
      return;
    }
    clearError();
    go({ si: input.value.trim(), backup: null, restore: null });
  });
  $('error-dismiss').addEventListener('click', clearError);
  // The hash holds the page's state: the skip link moves the focus without changing it.
  document.querySelector('.skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    $('main').focus();
  });
  $('create-backup-form').addEventListener('submit', createBackup);
  $('backups-refresh').addEventListener('click', () => loadBackups());
  $('backups-more').addEventListener('click', () => loadBackups({ more: true }));
  $('backup-detail-close').addEventListener('click', () => go({ backup: null }));
  $('restore-plan-close').addEventListener('click', closePlan);
  $('restore-start').addEventListener('click', startRestore);
  $('restore-safety').addEventListener('change', refreshPlan);
  $('restore-on-failure').addEventListener('change', refreshPlan);
  $('restore-options').addEventListener('submit', (e) => e.preventDefault());
  $('restores-refresh').addEventListener('click', () => loadRestores());
  $('restores-more').addEventListener('click', () => loadRestores({ more: true }));
  $('restore-detail-close').addEventListener('click', () => go({ restore: null }));
  $('jobs-kind').addEventListener('change', () => loadJobs());
  $('jobs-status').addEventListener('change', () => loadJobs());
  $('jobs-refresh').addEventListener('click', () => loadJobs());
  $('jobs-more').addEventListener('click', () => loadJobs({ more: true }));
  $('jobs-filter').addEventListener('submit', (e) => e.preventDefault());
  $('policy-form').addEventListener('submit', createPolicy);
  $('policies-refresh').addEventListener('click', () => loadPolicies());
  $('policies-more').addEventListener('click', () => loadPolicies({ more: true }));
  $('capacity-refresh').addEventListener('click', () => loadCapacity());
  window.addEventListener('hashchange', render);
  render();
  showEndpoint();
  setTimeout(refreshLoop, REFRESH_MS);
  document.body.dataset.ready = 'true';
}

init();
