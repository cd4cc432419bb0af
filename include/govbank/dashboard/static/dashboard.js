// The dashboard's only script (no inline script: the Content-Security-Policy allows 'self').
// It draws the charts with the vendored ECharts from the page's JSON block and keeps the
// filter state (a town, a bank, a month range) in the page and its address: a click on a
// town or a bank filters the other charts, the table and the export links. The rule is
// the server's (govbank.dashboard.tables), so an export holds what the page shows.
// Tooltips render inside the canvas (renderMode "richText"): ECharts' HTML tooltips
// carry inline styles, which the policy refuses.
(function () {
  "use strict";

  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  const source = document.getElementById("dashboard-data");
  if (!source || !window.echarts) return;
  const D = JSON.parse(source.textContent);
  const FONT = '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif';
  const months = D.months;
  const state = {
    from: D.state.from || months[0] || "",
    to: D.state.to || months[months.length - 1] || "",
    town: D.state.town || null,
    bank: D.state.bank || null,
  };
  const bankName = Object.fromEntries(D.banks.map((b) => [b.code, b.name]));
  const bankColour = Object.fromEntries(D.banks.map((b) => [b.code, b.colour]));
  const townName = Object.fromEntries(D.towns.map((t) => [t.code, t.name]));
  const charts = {};

  // ------------------------------------------------------------------ the filter rule

  function banksInScope() {
    let scope = null;
    if (state.town) {
      scope = new Set(D.outlets.filter((o) => o[0] === state.town && o[3] > 0).map((o) => o[1]));
    }
    if (state.bank) {
      scope = scope === null ? new Set([state.bank]) : new Set([...scope].filter((b) => b === state.bank));
    }
    return scope;
  }
  const inRange = (m) => (!state.from || m >= state.from) && (!state.to || m <= state.to);
  const monthLabel = (m) => `${m.slice(0, 4)}年${Number(m.slice(5))}月`;

  function toggle(key, value) {
    state[key] = state[key] === value ? null : value;
    update();
  }

  // ------------------------------------------------------------------ charts

  function chart(id, onClick) {
    if (!charts[id]) {
      const el = document.getElementById(id);
      if (!el) return null;
      charts[id] = echarts.init(el, null, { renderer: "canvas", locale: "ZH" });
      if (onClick) charts[id].on("click", onClick);
    }
    return charts[id];
  }

  function show(id, option, onClick) {
    const c = chart(id, onClick);
    if (!c) return;
    option.textStyle = { fontFamily: FONT };
    option.animation = false;
    c.setOption(option, true);
    // what the chart shows, readable from the DOM (tests; no need to read the canvas)
    c.getDom().dataset.option = JSON.stringify(option);
  }

  const tooltip = (extra) => Object.assign({ renderMode: "richText", confine: true }, extra);

  function drawMap() {
    const c = chart("chart-map", (p) => p.data && toggle("town", p.data.code));
    if (!c) return;
    const counts = {};
    const types = {};
    D.outlets.forEach(([town, bank, kind, n]) => {
      if (state.bank && bank !== state.bank) return;
      counts[town] = (counts[town] || 0) + n;
      types[town] = types[town] || {};
      types[town][kind] = (types[town][kind] || 0) + n;
    });
    const placed = D.towns.filter((t) => t.lon !== null && t.lat !== null);
    if (!placed.length) return;
    const lat0 = placed.reduce((s, t) => s + t.lat, 0) / placed.length;
    const kx = Math.cos((lat0 * Math.PI) / 180);
    const xs = placed.map((t) => t.lon * kx);
    const ys = placed.map((t) => t.lat);
    // one scale for both axes, so distances on the map stay honest
    const pad = 46;
    const w = c.getWidth() - 2 * pad;
    const h = c.getHeight() - 2 * pad;
    const spanX = Math.max(Math.max(...xs) - Math.min(...xs), 1e-6);
    const spanY = Math.max(Math.max(...ys) - Math.min(...ys), 1e-6);
    const scale = Math.min(w / spanX, h / spanY);
    const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
    const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
    const biggest = Math.max(1, ...placed.map((t) => counts[t.code] || 0));
    const data = placed.map((t, i) => {
      const n = counts[t.code] || 0;
      const chosen = state.town === t.code;
      const detail = Object.entries(types[t.code] || {}).map(([k, v]) => `${k} ${v}`).join("，") || "暂无服务点";
      return {
        name: t.name,
        code: t.code,
        detail: detail,
        value: [xs[i], ys[i], n],
        symbolSize: n ? 10 + 36 * Math.sqrt(n / biggest) : 7,
        itemStyle: {
          color: n ? "rgba(192, 57, 43, 0.75)" : "#b9c8d8",
          opacity: state.town && !chosen ? 0.35 : 1,
          borderColor: chosen ? "#1d2733" : "#ffffff",
          borderWidth: chosen ? 3 : 1.5,
        },
      };
    });
    data.sort((a, b) => b.value[2] - a.value[2]); // small circles drawn last, on top
    show("chart-map", {
      grid: { left: pad, right: pad, top: pad, bottom: pad },
      xAxis: { type: "value", show: false, min: cx - w / scale / 2, max: cx + w / scale / 2 },
      yAxis: { type: "value", show: false, min: cy - h / scale / 2, max: cy + h / scale / 2 },
      tooltip: tooltip({
        trigger: "item",
        formatter: (p) => `${p.name}：${p.value[2]} 个服务点\n${p.data.detail}`,
      }),
      series: [{
        type: "scatter",
        data: data,
        label: { show: true, formatter: "{b}", position: "top", color: "#1d2733", fontSize: 13 },
        labelLayout: { hideOverlap: false, moveOverlap: "shiftY" },
        emphasis: { scale: 1.1 },
      }],
    });
  }

  function drawTownBars() {
    const totals = {};
    const per = {};
    D.outlets.forEach(([town, bank, kind, n]) => {
      if (state.bank && bank !== state.bank) return;
      totals[town] = (totals[town] || 0) + n;
      per[`${town}|${kind}`] = (per[`${town}|${kind}`] || 0) + n;
    });
    // largest at the top (a category y axis runs bottom up)
    const towns = D.towns.map((t) => t.code).sort((a, b) => (totals[a] || 0) - (totals[b] || 0) || (a < b ? 1 : -1));
    show("chart-towns", {
      grid: { left: 90, right: 36, top: 10, bottom: 40 },
      legend: { bottom: 0, data: D.outletTypes.map((t) => t.name) },
      tooltip: tooltip({ trigger: "axis", axisPointer: { type: "shadow" } }),
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: towns.map((t) => townName[t]), axisTick: { show: false } },
      series: D.outletTypes.map((kind) => ({
        name: kind.name,
        type: "bar",
        stack: "towns",
        barMaxWidth: 18,
        color: kind.colour,
        data: towns.map((t) => ({
          value: per[`${t}|${kind.name}`] || 0,
          code: t,
          itemStyle: { opacity: state.town && state.town !== t ? 0.3 : 1 },
        })),
      })),
    }, (p) => p.data && toggle("town", p.data.code));
  }

  function drawTrend(scope) {
    const shown = months.filter(inRange);
    const per = {};
    D.monthly.forEach(([bank, month, , records]) => {
      if (scope && !scope.has(bank)) return;
      if (!inRange(month)) return;
      per[bank] = per[bank] || {};
      per[bank][month] = (per[bank][month] || 0) + records;
    });
    const banks = D.banks.map((b) => b.code).filter((b) => per[b]);
    show("chart-trend", {
      grid: { left: 56, right: 24, top: 16, bottom: 64 },
      legend: { bottom: 0, data: banks.map((b) => bankName[b]) },
      tooltip: tooltip({ trigger: "axis" }),
      xAxis: {
        type: "category",
        data: shown.map((m, i) => (i === 0 || m.endsWith("-01") ? monthLabel(m) : `${Number(m.slice(5))}月`)),
      },
      yAxis: { type: "value", minInterval: 1, name: "笔" },
      series: banks.map((b) => ({
        id: b,
        name: bankName[b],
        type: "line",
        color: bankColour[b],
        symbolSize: 7,
        lineStyle: { width: state.bank === b ? 4 : 2.5 },
        data: shown.map((m) => per[b][m] || 0),
      })),
    }, (p) => toggle("bank", p.seriesId));
  }

  function drawRecon(scope) {
    const sums = {};
    D.recon.forEach(([bank, month, , matched, bankOnly, govOnly]) => {
      if (scope && !scope.has(bank)) return;
      if (!inRange(month)) return;
      const s = (sums[bank] = sums[bank] || [0, 0, 0]);
      s[0] += matched;
      s[1] += bankOnly;
      s[2] += govOnly;
    });
    const banks = D.banks.map((b) => b.code).filter((b) => sums[b]).reverse();
    const total = [0, 1, 2].map((i) => banks.reduce((s, b) => s + sums[b][i], 0));
    D.reconParts.forEach((part, i) => {
      const el = document.querySelector(`#reconciliation strong[data-part="${part.key}"]`);
      if (el) el.textContent = String(total[i]);
    });
    show("chart-recon", {
      grid: { left: 150, right: 24, top: 10, bottom: 40 },
      legend: { bottom: 0, data: D.reconParts.map((p) => p.name) },
      tooltip: tooltip({ trigger: "axis", axisPointer: { type: "shadow" } }),
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: banks.map((b) => bankName[b]), axisTick: { show: false } },
      series: D.reconParts.map((part, i) => ({
        name: part.name,
        type: "bar",
        stack: "recon",
        barMaxWidth: 22,
        color: part.colour,
        label: { show: true, position: "inside", color: "#fff", formatter: (p) => (p.value >= 20 ? p.value : "") },
        data: banks.map((b) => ({
          value: sums[b][i],
          code: b,
          itemStyle: { opacity: state.bank && state.bank !== b ? 0.3 : 1 },
        })),
      })),
    }, (p) => p.data && toggle("bank", p.data.code));
  }

  // ------------------------------------------------------------------ the rest of the page

  function query(extra) {
    const q = new URLSearchParams();
    if (D.asOf) q.set("as_of", D.asOf);
    if (state.from) q.set("from", state.from);
    if (state.to) q.set("to", state.to);
    if (extra && state.town) q.set("town", state.town);
    if (extra && state.bank) q.set("bank", state.bank);
    return q.toString();
  }

  function chip(label, key) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.dataset.clear = key;
    b.textContent = `${label} ✕`;
    b.addEventListener("click", () => toggle(key, state[key]));
    return b;
  }

  function updatePage(scope) {
    document.querySelectorAll("#freshness tbody tr[data-bank]").forEach((tr) => {
      tr.hidden = scope !== null && !scope.has(tr.dataset.bank);
    });
    document.querySelectorAll("#map button.town").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.town === state.town));
    });
    const chips = document.getElementById("filter-state");
    if (chips) {
      chips.replaceChildren();
      if (state.town) chips.append(chip(`街道（镇）：${townName[state.town]}`, "town"));
      if (state.bank) chips.append(chip(`银行：${bankName[state.bank]}`, "bank"));
    }
    document.querySelectorAll("a.export").forEach((a) => {
      a.href = `${D.exportUrl}/${a.dataset.table}.${a.dataset.ext}?${query(true)}`;
    });
    const report = document.getElementById("report-link");
    if (report && D.reportUrl) report.href = `${D.reportUrl}?${query(false)}`;
    document.querySelectorAll("#range input[name=town], #range input[name=bank]").forEach((i) => i.remove());
    history.replaceState(null, "", `${location.pathname}?${query(true)}`);
    document.body.dataset.filter = JSON.stringify(state);
  }

  function update() {
    const scope = banksInScope();
    drawMap();
    drawTownBars();
    drawTrend(scope);
    drawRecon(scope);
    updatePage(scope);
  }

  document.querySelectorAll("#map button.town").forEach((b) => {
    b.addEventListener("click", () => toggle("town", b.dataset.town));
  });
  const range = document.getElementById("range");
  if (range) {
    const apply = () => {
      const from = range.elements.from.value;
      const to = range.elements.to.value;
      state.from = from && to && from > to ? to : from;
      state.to = from && to && from > to ? from : to;
      update();
    };
    range.addEventListener("submit", (e) => {
      e.preventDefault();
      apply();
    });
    range.elements.from.addEventListener("change", apply);
    range.elements.to.addEventListener("change", apply);
  }
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      Object.values(charts).forEach((c) => c.resize());
      drawMap();
    }, 150);
  });
  update();
  document.getElementById("dashboard").dataset.ready = "1";
})();
