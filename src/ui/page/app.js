// pareco ui: the form, the list of runs and their live state.
// Everything a transfer produces (paths, messages, the remote address) is
// put into the page with textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const cards = new Map();

// The key every API request shows. It comes in the fragment of the
// address `pareco ui` printed (`#key=...`, which the browser sends to no
// server), is kept for this tab only, and leaves the address bar at once.
const KEY = (() => {
  const given = /^#key=([0-9a-f]+)$/.exec(window.location.hash);
  if (given) {
    sessionStorage.setItem('pareco-ui-key', given[1]);
    window.history.replaceState(null, '', '/');
  }
  return sessionStorage.getItem('pareco-ui-key') || '';
})();
const AUTHORIZATION = { Authorization: `Bearer ${KEY}` };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function duration(s) {
  if (s === null || s === undefined) return '?';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function fill(list, items, line) {
  list.replaceChildren(...items.map((item) => el('li', '', line(item))));
}

function card(id) {
  if (cards.has(id)) return cards.get(id);
  const root = el('div', 'run');
  root.dataset.id = String(id);
  const head = el('div', 'head');
  const parts = {
    root,
    title: el('span', 'title'),
    state: el('span', 'state'),
    cancel: el('button', 'cancel', 'Cancel'),
    bar: el('progress'),
    numbers: el('div', 'numbers'),
    message: el('p', 'error message'),
    report: el('pre', 'report'),
    files: el('ul', 'files'),
    errors: el('ul', 'errors'),
    warnings: el('ul', 'warnings'),
    filesHead: el('h3', '', 'Files'),
    errorsHead: el('h3', '', 'Errors'),
    warningsHead: el('h3', '', 'Warnings'),
    reportHead: el('h3', '', 'Report'),
    stream: null,
  };
  parts.bar.max = 1;
  parts.bar.value = 0;
  parts.cancel.type = 'button';
  parts.cancel.addEventListener('click', () => cancel(id, parts));
  head.append(parts.title, parts.state, parts.cancel);
  root.append(head, parts.bar, parts.numbers, parts.message, parts.errorsHead, parts.errors,
    parts.warningsHead, parts.warnings, parts.filesHead, parts.files, parts.reportHead, parts.report);
  $('runs').prepend(root);
  $('no-runs').hidden = true;
  cards.set(id, parts);
  return parts;
}

function render(run) {
  const c = card(run.id);
  const arrow = run.direction === 'send' ? '→' : '←';
  c.title.textContent = `#${run.id} ${run.direction}: ${run.local} ${arrow} ${run.remote}`;
  const withErrors = run.state === 'done' && run.report && run.report.errors > 0;
  c.state.textContent = withErrors ? 'done with errors' : run.state;
  c.state.className = `state ${run.state}${withErrors ? ' with-errors' : ''}`;
  const ended = !['queued', 'running'].includes(run.state);
  c.cancel.hidden = ended;
  const p = run.progress;
  const atLeast = p.totals_final ? '' : '≥ ';
  c.bar.value = p.bytes_total > 0 ? p.bytes_done / p.bytes_total : (ended ? 1 : 0);
  const eta = ended ? '' : `, ETA ${p.eta_s === null ? '?' : duration(p.eta_s)}`;
  c.numbers.textContent = `${p.phase} · ${bytes(p.bytes_done)} of ${atLeast}${bytes(p.bytes_total)}`
    + ` · ${bytes(p.rate_bytes_per_s)}/s${eta} · files ${p.files_done} of ${atLeast}${p.files_total}`
    + ` · ${duration(p.elapsed_s)}`;
  c.message.textContent = run.message || '';
  fill(c.errors, run.errors, (e) => e);
  fill(c.warnings, run.warnings, (w) => w);
  fill(c.files, run.files, (f) => `${f.outcome}: ${f.path}${f.detail ? ` (${f.detail})` : ''}`);
  c.errorsHead.hidden = c.errors.hidden = run.errors.length === 0;
  c.warningsHead.hidden = c.warnings.hidden = run.warnings.length === 0;
  c.filesHead.hidden = c.files.hidden = run.files.length === 0;
  c.report.textContent = run.report ? Object.entries(run.report)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n') : '';
  c.reportHead.hidden = c.report.hidden = !run.report;
  if (ended && c.stream) { c.stream.abort(); c.stream = null; }
}

// Renders each `run` event of a run's event stream (server-sent events,
// read with fetch: EventSource cannot show the key) until the run ends.
async function watch(id) {
  const c = card(id);
  if (c.stream) return;
  const stream = new AbortController();
  c.stream = stream;
  try {
    const response = await fetch(`/api/runs/${id}/events`, { headers: AUTHORIZATION, signal: stream.signal });
    if (!response.ok || !response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const fields = buffer.slice(0, end).split('\n');
        buffer = buffer.slice(end + 2);
        const data = fields.filter((f) => f.startsWith('data:')).map((f) => f.slice(5).trimStart()).join('\n');
        if (fields.includes('event: run') && data !== '') render(JSON.parse(data));
      }
    }
  } catch (e) {
    // Aborted once the run ended, or the connection to the UI was lost:
    // then it is watched again a little later (as EventSource would).
    if (!stream.signal.aborted) setTimeout(() => watch(id), 2000);
  } finally {
    if (c.stream === stream) c.stream = null;
  }
}

async function api(method, path, body) {
  const options = { method, headers: { ...AUTHORIZATION } };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

async function cancel(id, parts) {
  parts.cancel.disabled = true;
  try {
    render(await api('DELETE', `/api/runs/${id}`));
  } catch (e) {
    parts.message.textContent = e.message;
  }
}

async function start(event) {
  event.preventDefault();
  const value = (id) => $(id).value.trim();
  const request = {
    direction: value('direction'),
    local: value('local'),
    remote: value('remote'),
    connections: value('connections'),
    chunk_size: value('chunk_size'),
    hash: value('hash'),
    delete: $('delete').checked,
    include: lines($('include').value),
    exclude: lines($('exclude').value),
    dry_run: $('dry_run').checked,
  };
  if ($('token').value !== '') request.token = $('token').value;
  if (value('bwlimit') !== '') request.bwlimit = value('bwlimit');
  if (value('tls_fingerprint') !== '') request.tls_fingerprint = value('tls_fingerprint');
  $('form-error').textContent = '';
  $('start').disabled = true;
  try {
    const { id } = await api('POST', '/api/runs', request);
    // The token is used once: it does not stay in the form.
    $('token').value = '';
    render(await api('GET', `/api/runs/${id}`));
    watch(id);
  } catch (e) {
    $('form-error').textContent = e.message;
  } finally {
    $('start').disabled = false;
  }
}

async function load() {
  $('transfer').addEventListener('submit', start);
  try {
    const runs = await api('GET', '/api/runs');
    for (const run of runs) {
      render(run);
      if (['queued', 'running'].includes(run.state)) watch(run.id);
    }
  } catch (e) {
    $('form-error').textContent = e.message;
  }
}

document.addEventListener('DOMContentLoaded', load);
