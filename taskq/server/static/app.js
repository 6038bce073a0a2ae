// taskq dashboard: local times, confirmations, live refresh, and a task's live
// progress over Server-Sent Events. Plain JavaScript, no build step, no dependencies.
"use strict";

(function () {
  const FINAL = new Set(["finished", "failed", "cancelled"]);
  const absFmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  const rel = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });

  function relative(date) {
    const s = (date.getTime() - Date.now()) / 1000;
    const a = Math.abs(s);
    if (a < 5) return "just now";
    if (a < 60) return rel.format(Math.round(s), "second");
    if (a < 3600) return rel.format(Math.round(s / 60), "minute");
    if (a < 86400) return rel.format(Math.round(s / 3600), "hour");
    return rel.format(Math.round(s / 86400), "day");
  }

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) continue;
      const abs = absFmt.format(d);
      if (el.dataset.kind === "rel") {
        el.textContent = relative(d);
        el.title = abs;
      } else {
        el.textContent = abs;
      }
    }
  }

  function confirmations(root) {
    for (const form of root.querySelectorAll("form[data-confirm]")) {
      if (form.dataset.bound) continue;
      form.dataset.bound = "1";
      form.addEventListener("submit", (ev) => {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    }
  }

  function enhance(root) {
    localTimes(root);
    confirmations(root);
  }

  // ---- periodic refresh of pages marked data-refresh="seconds" -------------------------
  function autoRefresh(main) {
    const every = Number(main.dataset.refresh || 0) * 1000;
    if (!every) return;
    let busy = false;
    async function tick() {
      if (busy || document.hidden) return;
      const active = document.activeElement;
      if (active && main.contains(active) && active.matches("input, select, textarea")) return;
      busy = true;
      try {
        const res = await fetch(window.location.href, { credentials: "same-origin", headers: { "X-Taskq-Refresh": "1" } });
        if (res.redirected || !res.ok) { if (res.status === 401 || res.redirected) window.location.reload(); return; }
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.getElementById("content");
        if (fresh) { main.innerHTML = fresh.innerHTML; enhance(main); }
      } catch (e) {
        for (const dot of document.querySelectorAll(".live-dot")) dot.classList.add("off");
      } finally {
        busy = false;
      }
    }
    window.setInterval(tick, every);
    window.setInterval(() => localTimes(main), 15000);
  }

  // ---- a task's live progress ------------------------------------------------------------
  function progressOf(task) {
    const p = task.progress;
    let fraction = null, label = "";
    if (p && typeof p === "object" && !Array.isArray(p)) {
      if (typeof p.percent === "number") fraction = Math.max(0, Math.min(1, p.percent));
      else if (Number.isInteger(p.step) && Number.isInteger(p.steps) && p.steps) fraction = Math.max(0, Math.min(1, p.step / p.steps));
      else if (p.done === true) fraction = 1;
      const bits = [];
      if (Number.isInteger(p.step) && p.steps) bits.push(`step ${p.step} of ${p.steps}`);
      if (typeof p.status === "string" && p.status) bits.push(p.status);
      label = bits.join(" · ");
    }
    if (task.status === "finished") { fraction = 1; label = "done"; }
    return { fraction, label };
  }

  function setTime(el, iso, kind) {
    if (!el || !iso) return;
    const t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.dataset.kind = kind;
    el.replaceChildren(t);
    localTimes(el);
  }

  function showTask(main, task) {
    const { fraction, label } = progressOf(task);
    const box = main.querySelector(".progress-card [data-progress]");
    if (box) {
      let bar = box.querySelector("progress");
      if (!bar) {
        box.innerHTML = "";
        bar = document.createElement("progress");
        bar.max = 1;
        const pct = document.createElement("span");
        pct.className = "pct";
        pct.dataset.pct = "";
        box.append(bar, pct);
      }
      bar.className = `bar bar-${task.status}`;
      if (fraction === null) bar.removeAttribute("value"); else bar.value = fraction;
      const pct = box.querySelector("[data-pct]");
      if (pct) pct.textContent = fraction === null ? "" : `${Math.round(fraction * 100)}%`;
      let lab = box.querySelector("[data-plabel]");
      if (label) {
        if (!lab) { lab = document.createElement("span"); lab.className = "plabel"; lab.dataset.plabel = ""; box.append(lab); }
        lab.textContent = label;
      } else if (lab) lab.remove();
    }
    const badge = main.querySelector(".head-actions [data-status]");
    if (badge) { badge.textContent = task.status; badge.className = `status status-${task.status}`; }
    const attempts = main.querySelector("[data-attempts]");
    if (attempts) attempts.textContent = `${task.attempts} of ${task.max_attempts}`;
    setTime(main.querySelector("[data-heartbeat]"), task.last_heartbeat_at, "rel");
    setTime(main.querySelector("[data-started]"), task.started_at, "abs");
    setTime(main.querySelector("[data-updated]"), task.updated_at, "abs");
    const worker = main.querySelector("[data-worker]");
    if (worker && task.worker_id) {
      const code = document.createElement("code");
      code.textContent = task.worker_id.split("-")[0];
      worker.replaceChildren(code);
    }
    main.dataset.status = task.status;
  }

  function liveTask(main) {
    const id = main.dataset.task;
    if (!id || FINAL.has(main.dataset.status) || !window.EventSource) return;
    const first = main.dataset.status;
    // the page was drawn from the row as of this time: an older event is stale news
    const drawn = Date.parse(main.dataset.updatedAt || "");
    const source = new EventSource(`/api/v1/tasks/${encodeURIComponent(id)}/events`);
    source.onmessage = (ev) => {
      let task;
      try { task = JSON.parse(ev.data); } catch (e) { return; }
      if (!Number.isNaN(drawn) && Date.parse(task.updated_at) < drawn) return;
      showTask(main, task);
      if (FINAL.has(task.status)) {
        source.close();
        // the page shows the result or error: draw it from the server
        window.setTimeout(() => window.location.reload(), 400);
      } else if (task.status !== first && task.status === "waiting") {
        source.close();
        window.setTimeout(() => window.location.reload(), 400);
      }
    };
    source.addEventListener("gone", () => { source.close(); window.location.reload(); });
    source.onerror = () => {
      const dot = main.querySelector("[data-live]");
      if (dot) dot.classList.toggle("off", source.readyState !== EventSource.OPEN);
    };
    source.onopen = () => {
      const dot = main.querySelector("[data-live]");
      if (dot) dot.classList.remove("off");
    };
    window.addEventListener("pagehide", () => source.close());
  }

  // ---- sign-in link: /login#token=... fills the form (the fragment never leaves the browser)
  function tokenFromFragment() {
    const form = document.getElementById("login-form");
    if (!form || !window.location.hash.startsWith("#token=")) return;
    const token = decodeURIComponent(window.location.hash.slice(7));
    history.replaceState(null, "", window.location.pathname + window.location.search);
    form.querySelector("input[name=token]").value = token;
    form.submit();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const main = document.getElementById("content");
    if (!main) return;
    enhance(document);
    tokenFromFragment();
    autoRefresh(main);
    liveTask(main);
  });
})();
