// echoplex's page: polls /page.json once a second and draws it.
//
// Safety: every text from the daemon (peer paths and addresses, kinds) is
// attacker-controlled; it only ever goes into the DOM as textContent,
// never as HTML. Every figure is an element with data-stat="NAME" (the
// `status --json` name; a dotted path for a breakdown) and, for one
// reactor's, data-reactor="N"; its text is the value as JSON has it.
'use strict';

(function () {
  const EVERY_MS = 1000;

  const NOW = [
    ['turns_per_s', 'turns per second'],
    ['events_per_turn', 'events per turn'],
    ['connections', 'connections open'],
    ['control_connections', 'control connections'],
    ['bytes_in_per_s', 'bytes in per second'],
    ['bytes_out_per_s', 'bytes out per second'],
    ['datagrams_in_per_s', 'datagrams in per second'],
    ['datagrams_out_per_s', 'datagrams out per second'],
    ['timers_pending', 'timers pending'],
  ];

  const SINCE = [
    ['loop_iterations', 'turns'],
    ['events', 'events'],
    ['timers_fired', 'timers fired'],
    ['accepted', 'connections accepted'],
    ['closed', 'connections closed'],
    ['bytes_in', 'bytes in'],
    ['bytes_out', 'bytes out'],
    ['datagrams_in', 'datagrams in'],
    ['datagrams_out', 'datagrams out'],
  ];

  const DROPS = [
    ['rejected_max_connections', 'refused: --max-connections reached'],
    ['rejected_no_fds', 'refused: out of file descriptors'],
    ['rejected_control', 'refused: control reserve full'],
    ['timeouts', 'closed: idle too long'],
    ['proxy_errors', 'closed: bad, missing or late PROXY header'],
    ['tls_errors', 'closed: TLS error'],
    ['dropped_datagrams', 'datagrams dropped: send queue full'],
    ['filtered_datagrams', 'datagrams dropped: looping source port'],
    ['rate_limited', 'datagrams dropped: per-source rate limit'],
    ['page_clients_dropped', 'page viewers dropped: not reading'],
  ];

  const STATES = [
    ['reading', 'reading'],
    ['writing', 'writing what it owes'],
    ['backpressure', 'held by backpressure'],
    ['draining', 'draining after an upgrade'],
    ['tls_handshake', 'in a TLS handshake'],
    ['proxy_header', 'in a PROXY header'],
    ['lingering', 'lingering close'],
    ['half_closed', 'half-closed by the peer'],
  ];

  const CHARTS = [
    ['turns_per_s', 'turns per second'],
    ['bytes_in_per_s', 'bytes in per second'],
    ['datagrams_in_per_s', 'datagrams in per second'],
    ['connections', 'connections open (control ones included)'],
  ];

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  // The value at a dotted path ("connections_by_state.reading").
  function pick(object, name) {
    const dot = name.indexOf('.');
    if (dot < 0) return object ? object[name] : undefined;
    const inner = object ? object[name.slice(0, dot)] : undefined;
    return inner ? inner[name.slice(dot + 1)] : undefined;
  }

  function header(table, cells) {
    const thead = el('thead');
    const tr = el('tr');
    tr.append(...cells);
    thead.append(tr);
    table.append(thead);
  }

  function figure(value, name, reactor) {
    const td = el('td', value === undefined ? 0 : value, 'num');
    td.setAttribute('data-stat', name);
    if (reactor !== null) td.setAttribute('data-reactor', String(reactor));
    return td;
  }

  // A table: one row per [name, label], a column for the total and one per reactor.
  function figures(rows, summary) {
    const table = el('table');
    header(table, [el('th', 'figure'), el('th', 'total', 'num'),
      ...summary.reactors.map((_, i) => el('th', 'reactor ' + i, 'num'))]);
    const body = el('tbody');
    for (const [name, label] of rows) {
      const tr = el('tr');
      const th = el('th', label);
      th.setAttribute('scope', 'row');
      tr.append(th, figure(pick(summary.total, name), name, null));
      summary.reactors.forEach((r, i) => tr.append(figure(pick(r, name), name, i)));
      body.append(tr);
    }
    table.append(body);
    return table;
  }

  let previousBuckets = null;

  function histogram(summary) {
    // The daemon's order (JSON objects come sorted by name).
    const buckets = ['0', '1', '2-3', '4-7', '8-15', '16-31', '32-63', '64+'].filter((b) => b in (summary.total.turn_events || {}));
    const now = buckets.map((b) => summary.total.turn_events[b]);
    const delta = previousBuckets && previousBuckets.length === now.length
      ? now.map((v, i) => Math.max(0, v - previousBuckets[i]))
      : now;
    previousBuckets = now;
    const all = delta.reduce((a, b) => a + b, 0) || 1;
    const table = el('table');
    header(table, [el('th', 'events'), el('th', 'recent share'), el('th', 'total', 'num'),
      ...summary.reactors.map((_, i) => el('th', 'reactor ' + i, 'num'))]);
    const body = el('tbody');
    buckets.forEach((bucket, i) => {
      const name = 'turn_events.' + bucket;
      const share = Math.round((100 * delta[i]) / all);
      const bar = el('div', null, 'bar');
      bar.style.width = share + '%';
      const shareCell = el('td', null, 'share');
      shareCell.append(bar, el('span', share + ' %', 'pct'));
      const tr = el('tr');
      const th = el('th', bucket + (bucket === '1' ? ' event' : ' events'));
      th.setAttribute('scope', 'row');
      tr.append(th, shareCell, figure(now[i], name, null));
      summary.reactors.forEach((r, k) => tr.append(figure(pick(r, name), name, k)));
      body.append(tr);
    });
    table.append(body);
    return table;
  }

  function kinds(summary) {
    const names = Object.keys(summary.total.connections_by_kind || {});
    if (names.length === 0) return el('p', 'No connections open.', 'note');
    return figures(names.map((k) => ['connections_by_kind.' + k, k]), summary);
  }

  // The history of every reactor, added up from the newest point back.
  function totalHistory(views, column) {
    let longest = 0;
    for (const v of views) longest = Math.max(longest, v.history[column].length);
    const sum = new Array(longest).fill(0);
    for (const v of views) {
      const values = v.history[column];
      const skip = longest - values.length;
      values.forEach((value, i) => { sum[skip + i] += value; });
    }
    return sum;
  }

  function chart(values, column, label) {
    const box = el('figure', null, 'chart');
    const canvas = el('canvas');
    canvas.width = 600;
    canvas.height = 70;
    const highest = values.length ? Math.max(...values) : 0;
    const max = Math.max(1, highest); // the scale; the caption says the truth
    const last = values.length ? values[values.length - 1] : 0;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', label + ' over the last minute: now ' + last + ', highest ' + highest);
    const g = canvas.getContext('2d');
    if (g) {
      const w = canvas.width;
      const h = canvas.height;
      const top = 8;
      g.fillStyle = '#ffffff';
      g.fillRect(0, 0, w, h);
      g.strokeStyle = '#c8c8c8';
      g.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const y = top + ((h - top - 4) * i) / 4;
        g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
      }
      const n = 60;
      const x = (i) => w - ((values.length - 1 - i) * w) / (n - 1);
      const y = (v) => h - 4 - ((h - top - 4) * v) / max;
      if (values.length > 1) {
        g.fillStyle = 'rgba(31, 94, 168, 0.18)';
        g.beginPath();
        g.moveTo(x(0), h);
        values.forEach((v, i) => g.lineTo(x(i), y(v)));
        g.lineTo(x(values.length - 1), h);
        g.closePath();
        g.fill();
      }
      g.strokeStyle = '#1f5ea8';
      g.lineWidth = 2.5;
      g.beginPath();
      values.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
      g.stroke();
    }
    const caption = el('figcaption');
    caption.append(el('strong', label), el('span', ' now ' + last + ', highest ' + highest + ' (last ' + values.length + ' s)'));
    caption.setAttribute('data-history', column);
    box.append(canvas, caption);
    return box;
  }

  function strips(summary) {
    const out = document.createDocumentFragment();
    summary.views.forEach((view, reactor) => {
      const list = el('ol', null, 'strip');
      list.setAttribute('aria-label', 'last turns of reactor ' + reactor);
      const turns = view.turns.slice(-16).reverse();
      for (const t of turns) {
        const item = el('li', null, 'turn');
        item.append(
          el('span', 'turn ' + t.turn, 'turn-no'),
          el('span', t.events + (t.events === 1 ? ' event' : ' events')
            + (t.tokens.length ? ': ' + t.tokens.join(' ') + (t.events > t.tokens.length ? ' …' : '') : '')),
          el('span', t.calls + (t.calls === 1 ? ' call' : ' calls')),
          el('span', t.timers + (t.timers === 1 ? ' timer' : ' timers')),
        );
        list.append(item);
      }
      const block = el('div', null, 'strip-block');
      block.append(el('h3', 'reactor ' + reactor + (turns.length ? '' : ': no turns yet')), list);
      out.append(block);
    });
    return out;
  }

  function stateLabel(name) {
    const found = STATES.find(([n]) => n === name);
    return found ? found[1] : name;
  }

  function connections(summary) {
    const rows = [];
    summary.views.forEach((view, reactor) => {
      for (const c of view.connections) rows.push(Object.assign({ reactor }, c));
    });
    rows.sort((a, b) => a.idle_ms - b.idle_ms || a.reactor - b.reactor || a.token - b.token);
    const shown = rows.slice(0, 100);
    $('conns-note').textContent = 'Showing ' + shown.length + ' of '
      + summary.total.connections + ' connections and '
      + summary.total.control_connections + ' control connections; at most 100, as of each reactor\u2019s last sample.';
    const table = el('table', null, 'conns');
    header(table, ['reactor', 'token', 'kind', 'peer', 'state', 'idle', 'bytes in', 'bytes out']
      .map((h) => el('th', h)));
    const body = el('tbody');
    for (const c of shown) {
      const tr = el('tr');
      tr.append(
        el('td', c.reactor, 'num'),
        el('td', c.token, 'num'),
        el('td', c.kind),
        el('td', c.peer, 'peer'),
        el('td', stateLabel(c.state)),
        el('td', (c.idle_ms / 1000).toFixed(1) + ' s', 'num'),
        el('td', c.bytes_in, 'num'),
        el('td', c.bytes_out, 'num'),
      );
      body.append(tr);
    }
    table.append(body);
    return table;
  }

  function draw(summary) {
    $('now-table').replaceChildren(figures(NOW, summary));
    $('since-table').replaceChildren(figures(SINCE, summary));
    const charts = document.createDocumentFragment();
    for (const [column, label] of CHARTS) {
      charts.append(chart(totalHistory(summary.views, column), column, label));
    }
    $('charts').replaceChildren(charts);
    $('hist-table').replaceChildren(histogram(summary));
    $('state-table').replaceChildren(figures(
      STATES.map(([n, label]) => ['connections_by_state.' + n, label]), summary));
    $('kind-table').replaceChildren(kinds(summary));
    $('drop-table').replaceChildren(figures(DROPS.filter(([n]) => n in summary.total), summary));
    $('turn-strips').replaceChildren(strips(summary));
    $('conn-table').replaceChildren(connections(summary));
    const n = summary.reactors.length;
    $('status').textContent = summary.state + ' \u00b7 ' + n + (n === 1 ? ' reactor' : ' reactors')
      + ' \u00b7 up ' + Number(summary.total.uptime_s).toFixed(1) + ' s \u00b7 updated '
      + new Date().toLocaleTimeString() + ' \u00b7 every second';
    document.body.setAttribute('data-updated', String(Date.now()));
  }

  async function tick() {
    const began = Date.now();
    try {
      const answer = await fetch('/page.json', { cache: 'no-store' });
      if (!answer.ok) throw new Error('HTTP ' + answer.status);
      draw(await answer.json());
    } catch (err) {
      $('status').textContent = 'The daemon is not answering (' + err.message + '); trying again every second.';
    }
    setTimeout(tick, Math.max(0, EVERY_MS - (Date.now() - began)));
  }

  tick();
})();
