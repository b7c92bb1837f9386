// The console's one page: HTML with its style and script inline, nothing
// fetched from anywhere but /console/api/ of the same server, so it works
// offline and under a Content-Security-Policy that allows exactly these two
// blocks (by hash) and same-origin fetches.

import { createHash } from 'node:crypto';
import { INVISIBLE_CHARACTERS } from '../invisible.js';

const STYLE = `
:root { color-scheme: light; --allow: #2e7d32; --deny: #c62828; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; background: #f6f6f4; }
header { display: flex; align-items: center; gap: 1em; padding: .6em 1em; background: #1f2a36; color: #fff; }
header h1 { font-size: 1.1em; margin: 0; }
header .who { margin-left: auto; font-size: .9em; opacity: .85; }
header button { margin-left: .5em; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 1em; padding: 1em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8em 1em; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1em; margin: 0 0 .6em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { text-align: left; padding: .25em .4em; border-bottom: 1px solid var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 16em; }
tbody tr.row { cursor: pointer; }
tbody tr.row:hover { background: #eef3f8; }
.ALLOW { color: var(--allow); font-weight: 600; }
.DENY { color: var(--deny); font-weight: 600; }
.muted { color: var(--muted); }
.bad { color: var(--deny); font-weight: 600; }
.good { color: var(--allow); font-weight: 600; }
form.filters { display: flex; flex-wrap: wrap; gap: .4em; margin-bottom: .6em; }
form.filters input, form.filters select { width: 9.5em; }
form.filters input[type=checkbox] { width: auto; }
.scroll { max-height: 26em; overflow: auto; }
pre { background: #f3f3f3; padding: .6em; overflow: auto; max-height: 32em; font-size: .85em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
svg { width: 100%; height: 220px; display: block; }
svg .axis { stroke: #999; stroke-width: 1; }
svg text { font-size: 10px; fill: #555; }
.legend { display: flex; flex-wrap: wrap; gap: .8em; margin-top: .4em; font-size: .9em; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: middle; }
.s0 { fill: #2e7d32; background: #2e7d32; } .s1 { fill: #c62828; background: #c62828; } .s2 { fill: #ef6c00; background: #ef6c00; }
.s3 { fill: #6a1b9a; background: #6a1b9a; } .s4 { fill: #1565c0; background: #1565c0; } .s5 { fill: #795548; background: #795548; }
.s6 { fill: #00838f; background: #00838f; } .s7 { fill: #9e9d24; background: #9e9d24; }
#auth { max-width: 32em; margin: 3em auto; }
#auth input { width: 100%; margin: .5em 0; }
.hidden { display: none !important; }
a.id, button.link { background: none; border: 0; padding: 0; color: #1565c0; cursor: pointer; font: inherit; text-decoration: underline; }
`;

const SCRIPT = `
'use strict';
const TOKEN_KEY = 'verdict-admin-token';
const $ = (id) => document.getElementById(id);
const REASONS = ['ALLOWED_BY_RULE','DENIED_BY_RULE','DENIED_BY_DEFAULT','DENIED_BY_RATE_LIMIT','DENIED_BY_ERROR','DENIED_INVALID_REQUEST','DENIED_UNAUTHENTICATED'];
let nextPage = null;
let pageStack = [];
let listParams = {};
let tailAbort = null;
let refreshTimer = null;

// An id spelled da\\u200Bna, or with a bidi override, must not read as another principal:
// invisible and control characters are shown as JSON escapes (\\u200B), so the record stays JSON.
const INVISIBLE = /[${INVISIBLE_CHARACTERS}\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]/gu;
function visible(text) {
  return text.replace(INVISIBLE, (c) => Array.from({ length: c.length }, (_, i) => '\\\\u' + c.charCodeAt(i).toString(16).toUpperCase().padStart(4, '0')).join(''));
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, k === 'title' ? visible(String(v)) : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(visible(String(c))));
  return node;
}
function svgEl(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}
function time(ms) { return new Date(ms).toISOString().replace('T', ' ').replace(/\\.\\d+Z$/, 'Z'); }
function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: 'Bearer ' + token } : {};
}
class Unauthorized extends Error {}
async function api(path, params) {
  const query = params ? '?' + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v != null)).toString() : '';
  const res = await fetch('/console/api/' + path + query, { headers: headers(), cache: 'no-store' });
  const body = await res.json().catch(() => ({ error: 'the server answered ' + res.status }));
  if (res.status === 401 || res.status === 403) { showAuth(body.error); throw new Unauthorized(body.error); }
  if (!res.ok) throw new Error(body.error || ('HTTP ' + res.status));
  return body;
}
function showAuth(message) {
  stopTail();
  $('auth').classList.remove('hidden');
  $('console').classList.add('hidden');
  $('auth-message').textContent = message || '';
}
function showConsole() {
  $('auth').classList.add('hidden');
  $('console').classList.remove('hidden');
  $('who').textContent = sessionStorage.getItem(TOKEN_KEY) ? 'signed in with the admin token' : 'admitted without a token (loopback or client certificate)';
}
function failed(target, error) {
  if (error instanceof Unauthorized) return;
  target.replaceChildren(el('p', { class: 'bad' }, error.message));
}

async function loadPolicy() {
  try {
    const p = await api('policy');
    $('policy-body').replaceChildren(el('dl', {},
      el('dt', {}, 'version'), el('dd', { id: 'policy-version' }, p.version),
      el('dt', {}, 'rules'), el('dd', { id: 'policy-rules' }, p.ruleCount),
      el('dt', {}, 'loaded at'), el('dd', {}, p.loadedAt),
      el('dt', {}, 'last reload'), el('dd', { id: 'policy-error', class: p.lastReloadError ? 'bad' : 'good' }, p.lastReloadError ? 'refused: ' + p.lastReloadError : 'ok'),
      el('dt', {}, 'watching'), el('dd', {}, p.watch && p.watch.mode ? p.watch.mode : 'no')));
  } catch (e) { failed($('policy-body'), e); }
}

async function loadAudit() {
  try {
    const a = await api('audit');
    const rows = [];
    if (a.error) rows.push(el('dt', {}, 'state'), el('dd', { class: 'bad' }, a.error));
    else if (!a.ok) rows.push(el('dt', {}, 'chain'), el('dd', { id: 'audit-chain', class: 'bad' }, 'BROKEN at seq ' + a.break.seq + ' (' + a.break.kind + '): ' + a.break.message));
    else rows.push(el('dt', {}, 'chain'), el('dd', { id: 'audit-chain', class: 'good' }, a.verifiedThrough === null ? 'no rows yet' : 'intact up to seq ' + a.verifiedThrough + ' (' + a.rows + ' rows from ' + a.start.from + ')'));
    rows.push(el('dt', {}, 'last signed checkpoint'), el('dd', { id: 'audit-checkpoint' }, a.lastCheckpoint ? 'seq ' + a.lastCheckpoint.seq + ' at ' + time(a.lastCheckpoint.timeMs) + (a.lastCheckpoint.keyId ? ' (key ' + a.lastCheckpoint.keyId + ')' : '') : 'none yet'));
    rows.push(el('dt', {}, 'checkpoints'), el('dd', {}, a.checkpoints.verified + ' of ' + a.checkpoints.total + ' verified; ' + a.unsignedRows + ' rows not yet signed'));
    rows.push(el('dt', {}, 'checked'), el('dd', {}, time(a.checkedAt) + ' (' + a.pass + ' pass' + (a.lastFullAt ? '; last full pass ' + time(a.lastFullAt) : '') + ')'));
    $('audit-body').replaceChildren(el('dl', {}, ...rows));
  } catch (e) { failed($('audit-body'), e); }
}

function filterValues() {
  const form = $('filters');
  const out = {};
  for (const name of ['principal', 'action', 'resourceType', 'resourceId', 'effect', 'reason', 'rule', 'since', 'until']) out[name] = form.elements[name].value.trim();
  return out;
}
function listValues() {
  return Object.assign(filterValues(), { limit: $('limit').value, own: $('own').checked ? '1' : '' });
}

async function loadSummary() {
  const f = filterValues();
  const by = $('chart-by').value;
  try {
    const s = await api('summary', Object.assign({}, f, { since: f.since || '1h', buckets: 60 }));
    drawChart(s, by);
  } catch (e) { failed($('chart-legend'), e); }
}

function drawChart(s, by) {
  const n = Math.max(1, Math.ceil((s.until - s.since) / s.bucketMs));
  const series = new Map();
  for (const c of s.counts) {
    const key = by === 'reason' ? c.reason : c.effect;
    if (!series.has(key)) series.set(key, new Array(n).fill(0));
    const i = Math.min(n - 1, Math.max(0, Math.floor((c.start - s.since) / s.bucketMs)));
    series.get(key)[i] += c.count;
  }
  const order = by === 'reason' ? REASONS : ['ALLOW', 'DENY'];
  const keys = [...series.keys()].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const totals = new Array(n).fill(0);
  for (const k of keys) series.get(k).forEach((v, i) => { totals[i] += v; });
  const max = Math.max(1, ...totals);
  const W = 800, H = 200, left = 40, bottom = 18, bw = (W - left) / n;
  const svg = $('chart');
  svg.replaceChildren();
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + (H + bottom));
  svg.append(svgEl('line', { class: 'axis', x1: left, y1: H, x2: W, y2: H }), svgEl('line', { class: 'axis', x1: left, y1: 0, x2: left, y2: H }));
  const maxLabel = svgEl('text', { x: 2, y: 10 }); maxLabel.textContent = String(max); svg.append(maxLabel);
  const zero = svgEl('text', { x: 2, y: H }); zero.textContent = '0'; svg.append(zero);
  for (const [label, at] of [[time(s.since), left], [time(s.until), W - 135]]) {
    const t = svgEl('text', { x: at, y: H + 14 }); t.textContent = label; svg.append(t);
  }
  const base = new Array(n).fill(0);
  keys.forEach((k) => {
    const colour = 's' + (order.indexOf(k) >= 0 ? order.indexOf(k) : 7) % 8;
    series.get(k).forEach((v, i) => {
      if (v === 0) return;
      const h = (v / max) * (H - 4);
      const rect = svgEl('rect', { class: colour, x: left + i * bw + 0.5, y: H - base[i] - h, width: Math.max(1, bw - 1), height: h, 'data-series': k });
      const title = svgEl('title'); title.textContent = k + ': ' + v + ' from ' + time(s.since + i * s.bucketMs); rect.append(title);
      svg.append(rect);
      base[i] += h;
    });
  });
  const legend = $('chart-legend');
  legend.replaceChildren(...keys.map((k) => {
    const colour = 's' + (order.indexOf(k) >= 0 ? order.indexOf(k) : 7) % 8;
    const total = series.get(k).reduce((a, b) => a + b, 0);
    return el('span', { 'data-series': k, 'data-total': total }, el('span', { class: 'swatch ' + colour }), k + ': ' + total);
  }));
  if (keys.length === 0) legend.replaceChildren(el('span', { class: 'muted' }, 'no decisions in this window'));
}

function decisionRow(d) {
  return el('tr', { class: 'row', 'data-id': d.decisionId, onclick: () => showDecision(d.decisionId) },
    el('td', {}, time(d.time)), el('td', {}, d.principalId), el('td', {}, d.action), el('td', {}, d.resourceType + '/' + d.resourceId),
    el('td', { class: d.effect }, d.effect), el('td', {}, d.reason), el('td', {}, d.ruleIds.join(', ')));
}

async function loadDecisions(page) {
  try {
    // Later pages ask with the first page's filters, its relative times as that answer resolved them (the token is bound to the times).
    const params = Object.assign({}, page ? listParams : listValues());
    if (page) params.page = page;
    const r = await api('decisions', params);
    if (!page) listParams = Object.assign(params, r.since !== null ? { since: String(r.since) } : {}, r.until !== null ? { until: String(r.until) } : {});
    $('decisions-body').replaceChildren(...r.decisions.map(decisionRow));
    if (r.decisions.length === 0) $('decisions-body').replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no decisions match')));
    nextPage = r.next;
    $('next').disabled = !nextPage;
    $('first').disabled = pageStack.length === 0;
    $('decisions-error').textContent = '';
  } catch (e) { if (!(e instanceof Unauthorized)) $('decisions-error').textContent = e.message; }
}

let recordShown = 0;
async function showDecision(id) {
  // Only the last decision asked for is shown: an earlier one answering later must not replace it.
  const asked = ++recordShown;
  $('record').classList.remove('hidden');
  $('record-id').textContent = id;
  // Never another decision's record under this id while this one loads.
  $('record-body').replaceChildren(el('p', { class: 'muted' }, 'loading…'));
  try {
    const d = await api('decision/' + encodeURIComponent(id));
    if (asked !== recordShown) return;
    $('record-body').replaceChildren(el('pre', { id: 'record-json' }, JSON.stringify(d, null, 2)));
  } catch (e) { if (asked === recordShown) failed($('record-body'), e); }
  $('record').scrollIntoView({ block: 'nearest' });
}

async function loadAlerts() {
  try {
    const r = await api('alerts', { since: '7d', limit: 100 });
    if (!r.enabled) { $('alerts-body').replaceChildren(el('p', { id: 'alerts-off', class: 'muted' }, 'Alerts are not enabled on this server.')); return; }
    if (r.alerts.length === 0) { $('alerts-body').replaceChildren(el('p', { class: 'muted' }, 'No alerts in the last 7 days.')); return; }
    $('alerts-body').replaceChildren(el('table', {}, el('thead', {}, el('tr', {}, ...['raised', 'type', 'subject', 'window', 'observed / threshold', 'decisions'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...r.alerts.map((a) => el('tr', { 'data-alert': a.id, 'data-subject': a.subject.kind + ' ' + a.subject.id, title: a.summary },
        el('td', {}, time(a.raisedAt)), el('td', {}, a.type), el('td', {}, a.subject.kind + ' ' + a.subject.id),
        el('td', {}, time(a.windowStart) + ' – ' + time(a.windowEnd)),
        el('td', {}, a.observed + ' / ' + a.threshold + (a.baseline != null ? ' (baseline ' + a.baseline + ')' : '')),
        el('td', {}, ...a.decisionIds.map((id) => el('button', { class: 'link', type: 'button', 'data-decision': id, onclick: () => showDecision(id) }, id.slice(0, 12) + '… '))))))));
  } catch (e) { failed($('alerts-body'), e); }
}

function stopTail() { if (tailAbort) { tailAbort.abort(); tailAbort = null; } }
async function startTail() {
  stopTail();
  const controller = new AbortController();
  tailAbort = controller;
  $('tail-state').textContent = 'connecting…';
  try {
    const res = await fetch('/console/api/tail', { headers: headers(), signal: controller.signal, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) { const b = await res.json().catch(() => ({})); showAuth(b.error); return; }
    if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
    $('tail-state').textContent = 'live';
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\\n\\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split('\\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\\n');
        if (data) addTail(JSON.parse(data));
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
    $('tail-state').textContent = 'disconnected: ' + e.message;
  }
  if (tailAbort === controller) { $('tail-state').textContent = 'reconnecting in 5 s'; setTimeout(() => { if (tailAbort === controller) startTail(); }, 5000); }
}
function addTail(d) {
  const body = $('tail-body');
  body.prepend(decisionRow(d));
  while (body.children.length > 100) body.lastElementChild.remove();
}

async function loadAll() {
  try { await api('policy'); } catch (e) { if (e instanceof Unauthorized) return; }
  showConsole();
  await Promise.all([loadPolicy(), loadAudit(), loadSummary(), loadDecisions(null), loadAlerts()]);
  startTail();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => { loadSummary(); loadAudit(); loadPolicy(); }, 60000);
}

document.addEventListener('DOMContentLoaded', () => {
  const reasonSelect = $('filters').elements.reason;
  for (const r of REASONS) reasonSelect.append(el('option', { value: r.toLowerCase() }, r.toLowerCase()));
  $('auth-form').addEventListener('submit', (e) => { e.preventDefault(); sessionStorage.setItem(TOKEN_KEY, $('token').value.trim()); $('token').value = ''; loadAll(); });
  $('signout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); clearInterval(refreshTimer); showAuth('Signed out.'); });
  $('filters').addEventListener('submit', (e) => { e.preventDefault(); pageStack = []; loadDecisions(null); loadSummary(); });
  $('next').addEventListener('click', () => { if (nextPage) { pageStack.push(nextPage); loadDecisions(nextPage); } });
  $('first').addEventListener('click', () => { pageStack = []; loadDecisions(null); });
  $('chart-by').addEventListener('change', loadSummary);
  $('refresh').addEventListener('click', () => { loadSummary(); loadAudit(); loadPolicy(); loadAlerts(); loadDecisions(null); });
  $('record-close').addEventListener('click', () => $('record').classList.add('hidden'));
  loadAll();
});
`;

const BODY = `
<header><h1>verdict console</h1><span class="muted">read-only</span><span class="who" id="who"></span><button id="refresh" type="button">Refresh</button><button id="signout" type="button">Sign out</button></header>
<div id="auth" class="hidden"><section>
  <h2>Admin token</h2>
  <p>This console shows the decision log and is protected like the Admin API. Paste the admin token (the content of <code>admin.tokenFile</code>). It is kept in this tab only (sessionStorage) and sent as <code>Authorization: Bearer</code>.</p>
  <p id="auth-message" class="bad"></p>
  <form id="auth-form"><input id="token" type="password" autocomplete="off" placeholder="admin token"><button type="submit">Sign in</button></form>
</section></div>
<main id="console" class="hidden">
  <section class="wide"><h2>Decisions over time
    <select id="chart-by" aria-label="group by"><option value="effect">by effect</option><option value="reason">by reason</option></select></h2>
    <svg id="chart" role="img" aria-label="decisions over time" preserveAspectRatio="none"></svg>
    <div id="chart-legend" class="legend"></div>
  </section>
  <section><h2>Policies</h2><div id="policy-body" class="muted">loading…</div></section>
  <section><h2>Audit trail</h2><div id="audit-body" class="muted">loading…</div></section>
  <section class="wide"><h2>Live tail <span id="tail-state" class="muted"></span></h2>
    <div class="scroll"><table><thead><tr><th>time</th><th>principal</th><th>action</th><th>resource</th><th>effect</th><th>reason</th><th>rules</th></tr></thead><tbody id="tail-body"></tbody></table></div>
  </section>
  <section class="wide"><h2>Decisions</h2>
    <form id="filters" class="filters">
      <input name="principal" placeholder="principal" aria-label="principal">
      <input name="action" placeholder="action" aria-label="action">
      <input name="resourceType" placeholder="resource type" aria-label="resource type">
      <input name="resourceId" placeholder="resource id" aria-label="resource id">
      <select name="effect" aria-label="effect"><option value="">any effect</option><option value="allow">allow</option><option value="deny">deny</option></select>
      <select name="reason" aria-label="reason"><option value="">any reason</option></select>
      <input name="rule" placeholder="rule id" aria-label="rule id">
      <input name="since" placeholder="since (1h, ISO)" aria-label="since">
      <input name="until" placeholder="until" aria-label="until">
      <select id="limit" aria-label="rows per page"><option>25</option><option selected>50</option><option>100</option><option>200</option></select>
      <label><input type="checkbox" id="own"> the console's own calls</label>
      <button type="submit" id="apply">Apply</button>
    </form>
    <p id="decisions-error" class="bad"></p>
    <div class="scroll"><table><thead><tr><th>time</th><th>principal</th><th>action</th><th>resource</th><th>effect</th><th>reason</th><th>rules</th></tr></thead><tbody id="decisions-body"></tbody></table></div>
    <p><button id="first" type="button" disabled>First page</button> <button id="next" type="button" disabled>Next page</button></p>
  </section>
  <section id="record" class="wide hidden"><h2>Decision <code id="record-id"></code> <button id="record-close" type="button">Close</button></h2><div id="record-body"></div></section>
  <section class="wide"><h2>Alerts</h2><div id="alerts-body" class="muted">loading…</div></section>
</main>
`;

/** The page as served. */
export const CONSOLE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>verdict console</title>
<style>${STYLE}</style>
</head><body>${BODY}<script>${SCRIPT}</script>
</body></html>
`;

function hash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * The page's Content-Security-Policy: its own inline script and style (by
 * hash) and nothing else; data only from this server; no frames, forms posted
 * nowhere, no base URL.
 */
export const CONSOLE_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
