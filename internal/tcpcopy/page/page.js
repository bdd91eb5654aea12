// tcpcopy's live page. It polls /api/status every second and updates the
// document in place. Everything taken from the traffic (request lines,
// response bytes, header names) goes in as text (textContent, text
// nodes), never as HTML. No library: plain DOM and SVG.
'use strict';

(() => {
  const POLL_MS = 1000;
  const WINDOW_MS = 10 * 60 * 1000; // the charts show the last ten minutes
  const GAP_MS = 5000; // samples further apart: tcpcopy was not sampling
  const SVG = 'http://www.w3.org/2000/svg';
  const nf = new Intl.NumberFormat('en-US');

  const state = {
    started: 0,   // the run the samples belong to
    samples: [],  // oldest first
    last: 0,      // time of the newest sample
    diffKey: '',  // the differences shown
    okAt: 0,      // time of the last good answer
  };

  const $ = (id) => document.getElementById(id);

  // h makes an element with a class and a text, appended to parent.
  function h(tag, cls, parent, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  const num = (n) => nf.format(n);
  const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });

  function pct(part, whole) {
    if (!whole) return '';
    const p = (100 * part) / whole;
    return (p > 0 && p < 0.1 ? '<0.1' : p.toFixed(1)) + ' %';
  }

  function bytes(n) {
    if (n < 10000) return num(n) + ' B';
    if (n < 10e6) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 10e9) return (n / 1048576).toFixed(1) + ' MiB';
    return (n / 1073741824).toFixed(1) + ' GiB';
  }

  function msText(v) {
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 2) + ' s';
    if (v >= 100) return v.toFixed(0) + ' ms';
    if (v >= 1) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }

  function duration(ms) {
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60); s -= mm * 60;
    if (d) return d + 'd ' + hh + 'h';
    if (hh) return hh + 'h ' + mm + 'm';
    if (mm) return mm + 'm ' + s + 's';
    return s + 's';
  }

  // bar fills a stacked bar with parts [{cls, n}].
  function bar(el, parts) {
    const total = parts.reduce((a, p) => a + p.n, 0);
    el.replaceChildren();
    if (!total) return;
    for (const p of parts) {
      if (!p.n) continue;
      const s = h('span', 'c-' + p.cls, el);
      s.style.width = (100 * p.n) / total + '%';
      s.title = p.cls + ': ' + num(p.n);
    }
  }

  // list fills a ul with [label, count] rows, or one "none" row.
  function list(el, rows, none, labelCls) {
    el.replaceChildren();
    if (!rows.length) {
      h('li', 'none', el, none);
      return;
    }
    for (const [label, n] of rows) {
      const li = h('li', '', el);
      h('span', labelCls || '', li, label);
      h('span', 'n', li, num(n));
    }
  }

  function legend(el, items) {
    el.replaceChildren();
    for (const it of items) {
      const li = h('li', '', el);
      h('span', 'swatch ' + it.swatch, li);
      h('span', '', li, it.text);
    }
  }

  // ---- the cards ----

  function renderCopy(s) {
    $('mappings').textContent = s.mappings.map((m) => '-x ' + m).join('   ');
    $('uptime').textContent = 'tcpcopy ' + s.version + ' · up ' + duration(s.now - s.started);

    const f = $('fidelity');
    const floor = Math.floor(s.fidelity * 10000 + 1e-6) / 100; // never shows 100 % for less
    f.textContent = (floor === 100 ? '100' : floor.toFixed(2)) + ' %';
    f.className = 'big ' + (s.fidelity >= 0.999 ? 'good' : s.fidelity >= 0.99 ? 'warn' : 'bad');
    let d = bytes(s.acked_bytes) + ' of ' + bytes(s.captured_bytes + s.uncopied_bytes) + ' acknowledged';
    if (s.uncopied_bytes) d += ' · ' + bytes(s.uncopied_bytes) + ' never copied';
    $('fidelity-detail').textContent = d;

    $('requests').textContent = num(s.requests);
    $('requests-detail').textContent = s.uncopied_requests
      ? num(s.uncopied_requests) + ' captured but not copied (their session had ended)'
      : 'sent to the target';

    const ss = s.sessions;
    const closed = ss.reproduced + ss.partial + ss.failed;
    $('sessions-total').textContent = num(ss.opened) + ' opened · ' + num(ss.active) + ' active';
    bar($('sessions-bar'), [
      { cls: 'reproduced', n: ss.reproduced }, { cls: 'partial', n: ss.partial }, { cls: 'failed', n: ss.failed },
    ]);
    legend($('sessions-legend'), [
      { swatch: 'c-reproduced', text: 'reproduced ' + num(ss.reproduced) + (closed ? ' (' + pct(ss.reproduced, closed) + ')' : '') },
      { swatch: 'c-partial', text: 'partial ' + num(ss.partial) },
      { swatch: 'c-failed', text: 'failed ' + num(ss.failed) },
    ]);
    $('failures').textContent = ss.top_failures.length
      ? 'Top failure reasons: ' + ss.top_failures.map((r) => r.name + ' ' + num(r.count)).join(', ')
      : 'No session failed.';

    const up = $('links-up');
    up.textContent = num(s.links.up);
    up.className = 'big ' + (s.links.up > 0 ? '' : 'bad');
    const ul = $('intercepts');
    ul.replaceChildren();
    for (const it of s.links.intercepts) {
      const li = h('li', '', ul);
      h('span', 'pair', li, it.addr);
      let t = it.up + ' up';
      if (it.version) t += ' · v' + it.version;
      t += it.compare ? ' · compares ' + num(it.compare) + ' B' : ' · no comparison';
      h('span', '', li, t);
    }
  }

  // ---- the comparison ----

  const VERDICTS = [
    ['same', 'same'], ['differs', 'differs'], ['missing', 'missing'], ['not_compared', 'not compared'],
  ];

  function renderCompare(s) {
    const c = s.compare;
    const note = $('compare-note');
    const body = $('compare-body');
    const total = VERDICTS.reduce((a, [k]) => a + (c.verdicts[k] || 0), 0);
    $('compare-total').textContent = c.state === 'off' ? '' : num(total) + ' responses judged';
    if (c.state === 'off') {
      note.hidden = false;
      note.className = 'note off';
      note.textContent = 'The response comparison is off (--compare-bytes 0): tcpcopy does not look at the responses.';
      body.hidden = true;
      return;
    }
    if (c.state === 'no_link') {
      note.hidden = false;
      note.className = 'note';
      note.textContent = 'No intercept link compares responses now (none is up, or intercept is older than protocol ' +
        'version 7): new sessions are not compared.' + (total ? ' The counts below are from earlier.' : '');
      body.hidden = total === 0;
    } else {
      note.hidden = true;
      body.hidden = false;
    }

    bar($('verdict-bar'), VERDICTS.map(([k]) => ({ cls: k, n: c.verdicts[k] || 0 })));
    const tiles = $('verdicts');
    tiles.replaceChildren();
    for (const [k, label] of VERDICTS) {
      const n = c.verdicts[k] || 0;
      const t = h('div', 'tile ' + k, tiles);
      h('div', 'label', t, label);
      const v = h('div', '', t);
      h('span', 'n', v, num(n));
      h('span', 'pct', v, pct(n, total));
    }
    // HTTP's kinds always, MySQL's (mysql_*) once one was counted.
    const kinds = ['status', 'header', 'length', 'body'].concat(
      Object.keys(c.kinds).filter((k) => k.startsWith('mysql_') && c.kinds[k] > 0).sort());
    list($('kinds'), kinds.map((k) => [k, c.kinds[k] || 0]), '');
    list($('status-changes'), c.status_changes.map((p) => [p.online + ' → ' + p.target, p.count]),
      'none', 'pair');
    list($('not-compared'), c.not_compared.map((r) => [r.name, r.count]), 'none');
  }

  // ---- the charts ----

  // axisTime draws the time ticks of [t0, t1] and returns the x scale.
  function axisTime(g, t0, t1, x0, x1, yBottom) {
    const span = t1 - t0;
    const step = [10e3, 30e3, 60e3, 120e3, 300e3].find((st) => span / st <= 6) || 600e3;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = x0 + ((t - t0) / span) * (x1 - x0);
      svg('line', { class: 'grid', x1: x, x2: x, y1: 0, y2: yBottom }, g);
      const anchor = x > x1 - 24 ? 'end' : x < x0 + 24 ? 'start' : 'middle'; // stay inside
      const label = svg('text', { class: 'axis', x: x, y: yBottom + 14, 'text-anchor': anchor }, g);
      label.textContent = clock(t);
    }
    return (t) => x0 + ((t - t0) / span) * (x1 - x0);
  }

  // frame clears the chart and returns its size and plot area.
  function frame(el) {
    const w = Math.max(el.clientWidth, 300);
    const hgt = Math.max(el.clientHeight, 150);
    el.setAttribute('viewBox', '0 0 ' + w + ' ' + hgt);
    el.replaceChildren();
    return { w, h: hgt, l: 58, r: w - 10, t: 6, b: hgt - 20 };
  }

  function empty(el, f, text) {
    const e = svg('text', { class: 'empty', x: (f.l + f.r) / 2, y: (f.t + f.b) / 2, 'text-anchor': 'middle' }, el);
    e.textContent = text;
  }

  // window returns the time range shown.
  function timeRange(now) {
    const first = state.samples.length ? state.samples[0].t - 1000 : now - 60e3;
    return [Math.max(now - WINDOW_MS, Math.min(first, now - 60e3)), now];
  }

  // path draws a line through points [[t, v]], broken at a null value
  // and where samples are missing (tcpcopy was not sampling).
  function path(g, pts, cls, x, y) {
    let d = '';
    let prev = null;
    for (const [t, v] of pts) {
      if (v === null) {
        prev = null;
        continue;
      }
      const cmd = prev !== null && t - prev <= GAP_MS ? 'L' : 'M';
      d += cmd + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
      prev = t;
    }
    if (d) svg('path', { class: 'line ' + cls, d: d }, g);
  }

  // rate is n per second over sample p.
  const rate = (n, p) => (n * 1000) / p.dt;
  const rateText = (v) => (v >= 10 ? Math.round(v) : +v.toFixed(1)) + '/s';

  function renderTimes(s) {
    const el = $('chart-times');
    const f = frame(el);
    const [t0, t1] = timeRange(s.now);
    const inRange = state.samples.filter((p) => p.t >= t0);
    const series = [];
    for (const side of ['target', 'online']) {
      // A second without a response timed breaks the line.
      const at = (q) => (p) => [p.t, p[side].n > 0 ? p[side][q] : null];
      series.push({ cls: 'p50 s-' + side, pts: inRange.map(at('p50_ms')) });
      series.push({ cls: 'p99 s-' + side, pts: inRange.map(at('p99_ms')) });
    }
    const values = series.flatMap((se) => se.pts.map((p) => p[1])).filter((v) => v > 0);
    const g = svg('g', {}, el);
    const x = axisTime(g, t0, t1, f.l, f.r, f.b);
    if (!values.length) {
      empty(el, f, inRange.length ? 'No response timed in these minutes.' : 'No sample yet.');
    } else {
      let lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values))));
      let hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values))));
      lo = Math.max(lo, 0.01);
      if (hi <= lo) hi = lo * 10;
      const y = (v) => f.b - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (f.b - f.t);
      for (let v = lo; v <= hi * 1.0001; v *= 10) {
        svg('line', { class: 'grid', x1: f.l, x2: f.r, y1: y(v), y2: y(v) }, g);
        const l = svg('text', { class: 'axis', x: f.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, g);
        l.textContent = v >= 1000 ? v / 1000 + ' s' : +v.toPrecision(1) + ' ms';
      }
      for (const se of series) path(g, se.pts, se.cls, x, y);
    }
    // Latest values in the legend: the newest second with requests.
    const lastOf = (side) => [...inRange].reverse().find((p) => p[side].n > 0);
    const items = [];
    for (const side of ['target', 'online']) {
      const p = lastOf(side);
      const v = p ? ' p50 ' + msText(p[side].p50_ms) + ' · p99 ' + msText(p[side].p99_ms) : ' —';
      items.push({ swatch: 'solid t-' + side, text: side + v });
    }
    items.push({ swatch: 'dashed t-online', text: 'p99' });
    legend($('times-legend'), items);
    const rt = s.response_times;
    const whole = (side) => (rt[side].n ? side + ' p50 ' + msText(rt[side].p50_ms) + ', p99 ' + msText(rt[side].p99_ms) : '');
    const w = [whole('target'), whole('online')].filter(Boolean).join('; ');
    $('times-total').textContent = w ? 'Whole run: ' + w + '.' : '';
  }

  function renderRates(s) {
    const el = $('chart-rates');
    const f = frame(el);
    const [t0, t1] = timeRange(s.now);
    const inRange = state.samples.filter((p) => p.t >= t0);
    const g = svg('g', {}, el);
    const x = axisTime(g, t0, t1, f.l, f.r, f.b);
    const max = Math.max(0, ...inRange.map((p) => rate(Math.max(p.requests, p.differs + p.missing), p)));
    if (!inRange.length) {
      empty(el, f, 'No sample yet.');
    } else {
      const mag = Math.pow(10, Math.floor(Math.log10(Math.max(max, 1))));
      const top = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= max) || 10 * mag;
      const y = (v) => f.b - (v / top) * (f.b - f.t);
      for (let i = 0; i <= 5; i++) {
        const v = (top * i) / 5;
        svg('line', { class: 'grid', x1: f.l, x2: f.r, y1: y(v), y2: y(v) }, g);
        const l = svg('text', { class: 'axis', x: f.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, g);
        l.textContent = Number.isInteger(v) ? num(v) : v.toFixed(1);
      }
      const bw = Math.max(1, ((f.r - f.l) * 1000) / (t1 - t0) - 1);
      for (const p of inRange) {
        const n = rate(p.differs + p.missing, p);
        if (n) svg('rect', { class: 'b-differs', x: x(p.t) - bw, y: y(n), width: bw, height: f.b - y(n) }, g);
      }
      path(g, inRange.map((p) => [p.t, rate(p.requests, p)]), 's-requests', x, y);
    }
    const last = inRange[inRange.length - 1];
    legend($('rates-legend'), [
      { swatch: 'solid t-requests', text: 'requests' + (last ? ' ' + rateText(rate(last.requests, last)) : '') },
      { swatch: 'c-differs', text: 'differ or missing' + (last ? ' ' + rateText(rate(last.differs + last.missing, last)) : '') },
    ]);
  }

  // ---- the differences ----

  // tokens splits the text of a response's bytes (printable UTF-8, with
  // \r, \n, \\ and \xNN escapes) into pieces, each with how many bytes of
  // the response it stands for.
  function tokens(text) {
    const out = [];
    let i = 0;
    while (i < text.length) {
      if (text[i] === '\\' && i + 1 < text.length) {
        const c = text[i + 1];
        if (c === 'r' || c === 'n' || c === '\\') {
          out.push({ t: text.slice(i, i + 2), n: 1, esc: c !== '\\', nl: c === 'n' });
          i += 2;
          continue;
        }
        if (c === 'x' && i + 4 <= text.length) {
          out.push({ t: text.slice(i, i + 4), n: 1, esc: true });
          i += 4;
          continue;
        }
      }
      const cp = text.codePointAt(i);
      const ch = String.fromCodePoint(cp);
      out.push({ t: ch, n: cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4 });
      i += ch.length;
    }
    return out;
  }

  // bytesPre shows a side's bytes, starting at byte `at` of the response,
  // with the byte at `first` (the first that differs, -1 unknown) marked.
  function bytesPre(parent, text, at, first) {
    const pre = h('pre', '', parent);
    let pos = at;
    let run = '';
    let runCls = '';
    const flush = () => {
      if (!run) return;
      if (runCls) h('span', runCls, pre, run);
      else pre.appendChild(document.createTextNode(run));
      run = '';
    };
    for (const tk of tokens(text)) {
      const where = first < 0 ? '' : pos === first || (pos < first && pos + tk.n > first) ? 'first' : pos > first ? 'after' : '';
      const cls = [tk.esc ? 'esc' : '', where].filter(Boolean).join(' ');
      if (cls !== runCls || where === 'first') flush();
      runCls = cls;
      run += tk.t;
      if (where === 'first') flush();
      if (tk.nl) {
        flush();
        pre.appendChild(document.createTextNode('\n'));
      }
      pos += tk.n;
    }
    flush();
    return pre;
  }

  function side(parent, title, sd, first) {
    const box = h('div', 'side', parent);
    h('h4', '', box, title + (sd.bytes_at ? ' · from byte ' + num(sd.bytes_at) : ''));
    if (!sd.bytes) {
      h('pre', 'absent', box, 'no bytes kept');
      return;
    }
    bytesPre(box, sd.bytes, sd.bytes_at, first);
  }

  function diffItem(d) {
    const li = h('li', 'diff ' + d.verdict);
    const head = h('div', 'diff-head', li);
    const tm = h('time', '', head, clock(d.time));
    tm.dateTime = d.time;
    tm.title = d.time;
    let badge = d.verdict;
    if (d.kind) badge += ': ' + d.kind + (d.header ? ' ' + d.header : '');
    h('span', 'badge ' + d.verdict, head, badge);
    h('code', 'request', head, d.request || '(request line not captured)');

    const facts = h('div', 'facts', li);
    const fact = (label, value) => {
      const s = h('span', '', facts, label + ' ');
      h('b', '', s, value);
    };
    const on = d.online;
    const tg = d.target_response;
    const missing = d.verdict === 'missing';
    const st = (v) => (v ? String(v) : '–');
    if (on.mysql || tg.mysql) {
      // A MySQL answer: OK, ERR, result set, with its counts.
      const my = (v) => (v ? v.summary : '–');
      fact('answer', missing ? my(on.mysql) + ' → none' : my(on.mysql) + ' → ' + my(tg.mysql));
    } else {
      fact('status', missing ? st(on.status) + ' → none' : st(on.status) + ' → ' + st(tg.status));
    }
    fact('length', missing ? bytes(on.length) : bytes(on.length) + ' → ' + bytes(tg.length));
    const t = (v) => (v > 0 ? msText(v) : '–'); // 0: not measured
    if (on.time_ms > 0 || (!missing && tg.time_ms > 0)) {
      fact('time', missing ? t(on.time_ms) : t(on.time_ms) + ' → ' + t(tg.time_ms));
    }
    if (d.offset >= 0) fact('first difference at byte', num(d.offset));
    fact('response', d.index < 0 ? 'greeting' : '#' + (d.index + 1) + ' of its connection');
    fact('client', d.client);
    if (d.unmasked) fact('masks', 'not applied (body longer than --compare-bytes)');

    const sides = h('div', 'sides', li);
    side(sides, 'online', on, d.offset);
    if (missing) {
      const box = h('div', 'side', sides);
      h('h4', '', box, 'target');
      h('pre', 'absent', box, 'no response from the target');
    } else {
      side(sides, 'target', tg, d.offset);
    }
    return li;
  }

  function renderDiffs(s) {
    const ds = s.differences;
    const key = ds.map((d) => d.time + ' ' + d.client + ' ' + d.index).join('|');
    const cmp = s.compare;
    // The list can be a moment ahead of the counts (published every few
    // milliseconds by the workers).
    const all = Math.max(ds.length, cmp.state === 'off' ? 0 : (cmp.verdicts.differs || 0) + (cmp.verdicts.missing || 0));
    $('diffs-count').textContent = !ds.length ? '' : all > ds.length
      ? 'the newest ' + ds.length + ' of ' + num(all) + ', newest first'
      : num(ds.length) + ', newest first';
    $('diffs-empty').textContent = cmp.state === 'off' ? 'The response comparison is off.' : 'None yet.';
    $('diffs-empty').hidden = ds.length > 0;
    if (key === state.diffKey) return;
    state.diffKey = key;
    $('diffs').replaceChildren(...ds.map(diffItem));
  }

  // ---- polling ----

  function merge(s) {
    if (s.started !== state.started) {
      state.started = s.started; // another run: start over
      state.samples = [];
      state.last = 0;
    }
    for (const p of s.samples) {
      if (p.t > state.last) {
        // The time the sample covers: about a second, more when a tick
        // came late.
        p.dt = state.last && p.t - state.last <= GAP_MS ? p.t - state.last : 1000;
        state.samples.push(p);
        state.last = p.t;
      }
    }
    const cut = s.now - WINDOW_MS;
    let i = 0;
    while (i < state.samples.length && state.samples[i].t < cut) i++;
    if (i) state.samples.splice(0, i);
  }

  function setLive(ok) {
    const el = $('live');
    el.className = 'live ' + (ok ? 'ok' : 'down');
    $('live-text').textContent = ok
      ? 'live · updated ' + clock(state.okAt)
      : state.okAt
        ? 'no answer from tcpcopy since ' + clock(state.okAt) + ' (stopped?)'
        : 'no answer from tcpcopy';
  }

  async function poll() {
    try {
      const url = '/api/status' + (state.last ? '?since=' + state.last : '');
      const r = await fetch(url, { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const s = await r.json();
      merge(s);
      state.okAt = Date.now();
      renderCopy(s);
      renderCompare(s);
      renderTimes(s);
      renderRates(s);
      renderDiffs(s);
      setLive(true);
      document.body.dataset.updated = String(s.now); // for tests: a render finished
    } catch (e) {
      setLive(false);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
