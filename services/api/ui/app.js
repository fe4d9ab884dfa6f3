// The run page: the runs list, and one run followed live through its event stream. Everything shown comes from
// /v1 with the bearer token typed here (kept in this tab's sessionStorage); text is inserted as text, never HTML.
"use strict";

const PHASES = ["time/generate_s", "time/reward_s", "time/train_s", "time/weight_sync_s"];
const COLORS = ["#0969da", "#1a7f37", "#bf3989", "#9a6700", "#8250df"];
const MAX_EVENTS = 200;
const STEP_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
const RECONNECT_MS = 2000;
const $ = (id) => document.getElementById(id);
let current = null;

function token() {
  return sessionStorage.getItem("visiong1-token") || "";
}

function headers(extra = {}) {
  return token() ? {...extra, authorization: `Bearer ${token()}`} : extra;
}

// The JSON body of `method path`; throws an Error naming the status and the API's detail (fields for a 422).
async function api(method, path, body) {
  const init = {method, headers: headers(body === undefined ? {} : {"content-type": "application/json"})};
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${describe(data)}`);
  return data;
}

function describe(data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return typeof detail === "string" ? detail : JSON.stringify(data);
}

function say(text, ok = false) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "";
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell instanceof Node ? cell : String(cell ?? ""));
    tr.append(td);
  }
  return tr;
}

function runPath(runId, rest = "") {
  return `/v1/runs/${encodeURIComponent(runId)}${rest}`;
}

async function showRuns() {
  $("runs-view").hidden = false;
  $("run-view").hidden = true;
  const {runs} = await api("GET", "/v1/runs");
  $("runs").tBodies[0].replaceChildren(...runs.map((run) => {
    const link = document.createElement("a");
    link.href = `#run=${encodeURIComponent(run.id)}`;
    link.textContent = run.id;
    return row([link, run.name, run.status, run.rollout_replicas, new Date(run.created_at * 1000).toLocaleString()]);
  }));
}

// A line chart of `labels` against the step; `el.dataset.points` counts the steps drawn (the browser test reads it).
function lineChart(el, labels, stepped = false) {
  const series = [{label: "step"}, ...labels.map((label, i) => ({label, stroke: COLORS[i % COLORS.length],
    paths: stepped ? uPlot.paths.stepped({align: 1}) : undefined}))];
  el.replaceChildren();
  el.dataset.points = "0";
  return new uPlot({width: 480, height: 220, scales: {x: {time: false}}, series,
                    axes: [{label: "step", incrs: STEP_TICKS}, {}]}, [[], ...labels.map(() => [])], el);
}

class RunView {
  constructor(runId) {
    this.runId = runId;
    this.lastEventId = 0;
    this.ended = false;
    this.abort = new AbortController();
    this.steps = [];
    this.evaluations = new Map();
    this.charts = {reward: lineChart($("chart-reward"), ["reward mean", "accuracy"]),
                   phases: lineChart($("chart-phases"), PHASES.map((key) => key.slice(5))),
                   replicas: lineChart($("chart-replicas"), ["replicas"], true)};
    for (const id of ["rounds", "funnel", "scaling"]) $(id).tBodies[0].replaceChildren();
    $("heldout").tHead.replaceChildren();
    $("heldout").tBodies[0].replaceChildren();
    $("events").replaceChildren();
    $("run-id").textContent = runId;
    $("last-step").textContent = "-";
    $("replica-count").textContent = "?";
  }

  start() {
    $("runs-view").hidden = true;
    $("run-view").hidden = false;
    this.refresh().catch((error) => say(error.message));
    this.follow();
  }

  stop() {
    this.abort.abort();
    for (const chart of Object.values(this.charts)) chart.destroy();
  }

  // The run's status, rounds and rollout target, from the API (the stream says when they change).
  async refresh() {
    const [run, {rounds}, replicas] = await Promise.all([api("GET", runPath(this.runId)),
      api("GET", runPath(this.runId, "/rounds")), api("GET", runPath(this.runId, "/rollout/replicas"))]);
    $("run-status").textContent = run.status + (run.cancel_requested ? " (cancel requested)" : "");
    $("rounds").tBodies[0].replaceChildren(...rounds.map((r) =>
      row([r.index, r.state, r.steps, r.last_step ?? "-", r.error ?? ""])));
    const policy = replicas.autoscale;
    $("replica-target").textContent = replicas.source === "autoscale"
      ? `${policy.min_replicas}..${policy.max_replicas} by load` : replicas.replicas;
    $("replica-source").textContent = replicas.source;
  }

  // Follows the event stream until the run's terminal event, reconnecting after the last event seen.
  async follow() {
    while (!this.ended && !this.abort.signal.aborted) {
      try {
        await this.read();
      } catch (error) {
        if (this.abort.signal.aborted) return;
        say(`event stream: ${error.message}; reconnecting`);
      }
      if (!this.ended) await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  // One connection: server-sent events read from a streamed fetch (EventSource cannot send the bearer token).
  async read() {
    const response = await fetch(runPath(this.runId, "/events"), {signal: this.abort.signal,
      headers: headers({"last-event-id": String(this.lastEventId)})});
    if (!response.ok) throw new Error(`${response.status} ${describe(await response.json().catch(() => null))}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    let data = [];
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      const lines = (pending + value).split(/\r\n|\r|\n/);
      pending = lines.pop();
      for (const line of lines) {
        if (line === "" && data.length) this.receive(JSON.parse(data.join("\n")));
        if (line === "") data = [];
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  }

  receive(event) {
    this.lastEventId = event.id;
    const item = document.createElement("li");
    item.textContent = `#${event.id} ${event.type} ${JSON.stringify(event.payload).slice(0, 160)}`;
    $("events").prepend(item);
    while ($("events").children.length > MAX_EVENTS) $("events").lastChild.remove();
    (HANDLERS[event.type] || (() => {}))(this, event.payload);
    if (event.type === "run_finished" || event.type === "run_failed") this.ended = true;
  }

  addStep(payload) {
    this.steps.push({step: payload.step, metrics: payload.metrics});
    $("last-step").textContent = payload.step;
    if ("rollout/replicas" in payload.metrics) $("replica-count").textContent = payload.metrics["rollout/replicas"];
    this.draw();
  }

  // A restarted run redoes the steps from `from_step`: their points are dropped and come again.
  supersede(payload) {
    this.steps = this.steps.filter((s) => s.step < payload.from_step);
    this.draw();
  }

  draw() {
    const x = this.steps.map((s) => s.step);
    const column = (key) => this.steps.map((s) => s.metrics[key] ?? null);
    this.charts.reward.setData([x, column("reward/mean"), column("reward/accuracy")]);
    this.charts.phases.setData([x, ...PHASES.map(column)]);
    this.charts.replicas.setData([x, column("rollout/replicas")]);
    for (const id of ["chart-reward", "chart-phases", "chart-replicas"]) $(id).dataset.points = String(x.length);
  }

  addEvaluation(payload) {
    this.evaluations.set(payload.label, payload.accuracy);
    const labels = [...this.evaluations.keys()];
    const domains = [...new Set(labels.flatMap((label) => Object.keys(this.evaluations.get(label))))].sort();
    const head = row(["domain", ...labels]);
    $("heldout").tHead.replaceChildren(head);
    $("heldout").tBodies[0].replaceChildren(...domains.map((domain) => row([domain, ...labels.map((label) => {
      const value = this.evaluations.get(label)[domain];
      return value === undefined ? "-" : value.toFixed(3);
    })])));
  }
}

const HANDLERS = {
  step: (view, p) => view.addStep(p),
  steps_superseded: (view, p) => view.supersede(p),
  selection: (_view, p) => $("funnel").tBodies[0].append(row([p.round, p.pool, p.targets, p.in_band, p.kept])),
  evaluation: (view, p) => view.addEvaluation(p),
  rollout_scaled: (view, p) => {
    $("scaling").tBodies[0].append(row(["rollout_scaled", "rollout", p.previous, p.replicas, p.source, p.reason]));
    $("replica-count").textContent = p.replicas;
    view.refreshSoon();
  },
  reward_scaled: (_view, p) => {
    $("scaling").tBodies[0].append(row(["reward_scaled", "reward", p.previous, p.workers, p.source, ""]));
  },
  influence_scaled: (_view, p) => {
    $("scaling").tBodies[0].append(row(["influence_scaled", "influence", p.previous, p.workers, p.source, ""]));
  },
};
for (const kind of ["round_started", "round_state", "run_resumed", "run_cancelled", "run_finished", "run_failed"]) {
  HANDLERS[kind] = (view) => view.refreshSoon();
}

// Coalesces the refreshes a burst of events asks for into one pair of requests.
RunView.prototype.refreshSoon = function () {
  clearTimeout(this.refreshTimer);
  this.refreshTimer = setTimeout(() => this.refresh().catch((error) => say(error.message)), 200);
};

// Runs `action` for the run on view and reports its outcome in the message line.
async function act(describeDone, action) {
  if (!current) return;
  say("");
  try {
    const result = await action(current.runId);
    say(describeDone(result), true);
    await current.refresh();
  } catch (error) {
    say(error.message);
  }
}

function bindActions() {
  $("start-round").addEventListener("submit", (event) => {
    event.preventDefault();
    const steps = $("round-steps").value;
    act((r) => `round ${r.index} ${r.state}`, (id) =>
      api("POST", runPath(id, "/rounds"), {overrides: steps === "" ? {} : {"round.steps": Number(steps)}}));
  });
  $("scale").addEventListener("submit", (event) => {
    event.preventDefault();
    const replicas = Number($("replicas").value);
    act((r) => `rollout target ${r.replicas} (${r.source})`, (id) =>
      api("PUT", runPath(id, "/rollout/replicas"), {replicas}));
  });
  $("scale-clear").addEventListener("click", () => act((r) => `rollout target ${r.replicas} (${r.source})`,
    (id) => api("DELETE", runPath(id, "/rollout/replicas"))));
  $("cancel").addEventListener("click", () => {
    if (confirm(`Cancel run ${current.runId}? It stops at its next step boundary.`)) {
      act((r) => `run ${r.id}: cancel requested`, (id) => api("POST", runPath(id, "/cancel")));
    }
  });
  $("resume").addEventListener("click", () => act((r) => `run ${r.id} ${r.status}`,
    (id) => api("POST", runPath(id, "/resume"))));
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("visiong1-token", $("token").value.trim());
    route();
  });
}

function route() {
  if (current) current.stop();
  current = null;
  say("");
  const match = location.hash.match(/^#run=(.+)$/);
  if (match) {
    current = new RunView(decodeURIComponent(match[1]));
    current.start();
  } else {
    showRuns().catch((error) => say(error.message));
  }
}

bindActions();
window.addEventListener("hashchange", route);
route();
