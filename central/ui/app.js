// Staff web UI: the review queue, an inspection with its annotated frames,
// pickup beside return for each finding, decisions with a comment, the audit
// trail, report downloads, a vehicle's history and the fleet.
//
// Plain DOM, no framework: every text goes in with textContent (never
// innerHTML), every picture and file is fetched with the bearer token and
// shown from a blob: URL, and routes live in the URL fragment so the server
// only serves files. Texts come from /ui/i18n/<lang>.json through t(key).
"use strict";

(() => {
  const LANGS = ["en", "de", "fr", "it", "es", "nl"];
  const TOKEN_KEY = "inspection-api-token";
  const PKCE_KEY = "inspection-sign-in";
  const S = {
    token: sessionStorage.getItem(TOKEN_KEY),
    lang: "en",
    dict: {},
    en: {},
    config: { sign_in: null, languages: LANGS },
    me: null,
    blobs: [],
    firstRoute: true,
  };

  const $ = (selector) => document.querySelector(selector);

  // ---- Texts ---------------------------------------------------------------

  function t(key, vars) {
    let text = S.dict[key] ?? S.en[key] ?? key;
    for (const [name, value] of Object.entries(vars || {})) {
      text = text.replaceAll("{" + name + "}", String(value));
    }
    return text;
  }
  // A key made at run time (statuses, classes): its raw value when no
  // translation has it.
  function tk(key, vars, fallback) {
    if (S.dict[key] === undefined && S.en[key] === undefined) return fallback ?? key;
    return t(key, vars);
  }

  async function loadTexts(lang) {
    const get = async (l) => (await fetch("/ui/i18n/" + l + ".json")).json();
    if (!Object.keys(S.en).length) S.en = await get("en");
    S.dict = lang === "en" ? S.en : await get(lang);
    S.lang = lang;
    localStorage.setItem("inspection-lang", lang);
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
    const select = $("#lang");
    select.replaceChildren(
      ...LANGS.map((l) => h("option", { value: l, selected: l === lang }, tk("language." + l))),
    );
  }

  function preferredLang() {
    const saved = localStorage.getItem("inspection-lang");
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || []) {
      const base = l.slice(0, 2).toLowerCase();
      if (LANGS.includes(base)) return base;
    }
    return "en";
  }

  const when = (iso) =>
    iso
      ? new Intl.DateTimeFormat(S.lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso))
      : "—";
  const number = (n) => new Intl.NumberFormat(S.lang).format(n);
  const percent = (x) => new Intl.NumberFormat(S.lang, { style: "percent" }).format(x);

  // ---- DOM -----------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(4)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  // Puts the view in <main>; null and false children are left out.
  function show(...children) {
    $("#main").replaceChildren(...children.flat(4).filter((c) => c !== null && c !== undefined && c !== false));
  }

  function say(text, isError) {
    const status = $("#status");
    status.classList.toggle("error", Boolean(isError));
    status.setAttribute("role", isError ? "alert" : "status");
    status.textContent = text || "";
  }

  // ---- The API -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || "HTTP " + status);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: options.accept || "application/json" };
    if (S.token) headers.Authorization = "Bearer " + S.token;
    let body;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, { method: options.method || "GET", headers, body });
    } catch (_) {
      throw new ApiError(0, { detail: t("error.network") });
    }
    if (response.status === 401 && !options.signingIn) {
      signOut(t("signin.expired"));
      throw new ApiError(401, { detail: t("signin.expired") });
    }
    if (!response.ok) {
      let problem = {};
      try {
        problem = await response.json();
      } catch (_) {
        // not problem+json: the status says enough
      }
      throw new ApiError(response.status, problem);
    }
    return options.raw ? response : response.json();
  }

  async function blobUrl(path) {
    const response = await api(path, { raw: true, accept: "*/*" });
    const url = URL.createObjectURL(await response.blob());
    S.blobs.push(url);
    return url;
  }

  // An <img> filled from an authenticated URL.
  function picture(path, alt) {
    const img = h("img", { alt, decoding: "async" });
    blobUrl(path)
      .then((url) => {
        img.src = url;
      })
      .catch((e) => {
        img.replaceWith(h("p", { class: "warning" }, t("error.picture", { error: e.message })));
      });
    return img;
  }

  async function download(path, fallbackName) {
    const response = await api(path, { raw: true, accept: "*/*" });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: match ? match[1] : fallbackName, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---- Sign-in -------------------------------------------------------------

  const b64url = (bytes) =>
    btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
  const redirectUri = () => location.origin + "/ui/";

  async function startProviderSignIn() {
    const c = S.config.sign_in;
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const back = location.hash.startsWith("#/signin") ? "#/queue" : location.hash || "#/queue";
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, back }));
    const url = new URL(c.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: c.client_id,
      redirect_uri: redirectUri(),
      scope: c.scope,
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
    }).toString();
    location.assign(url.toString());
  }

  // Back from the provider with ?code=...&state=...: trade the code for a
  // token. Returns a message when that failed.
  async function finishProviderSignIn() {
    const query = new URLSearchParams(location.search);
    if (!query.has("code") && !query.has("error")) return null;
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    sessionStorage.removeItem(PKCE_KEY);
    history.replaceState(null, "", "/ui/" + ((saved && saved.back) || "#/queue"));
    if (query.has("error")) return t("signin.provider_error", { error: query.get("error") });
    if (!saved || saved.state !== query.get("state") || !S.config.sign_in) return t("signin.state_mismatch");
    const c = S.config.sign_in;
    let response;
    try {
      response = await fetch(c.token_endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code: query.get("code"),
          redirect_uri: redirectUri(),
          client_id: c.client_id,
          code_verifier: saved.verifier,
        }),
      });
    } catch (_) {
      return t("signin.provider_error", { error: t("error.network") });
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.access_token) {
      return t("signin.provider_error", { error: body.error || response.status });
    }
    S.token = body.access_token;
    sessionStorage.setItem(TOKEN_KEY, S.token);
    return null;
  }

  function signOut(message) {
    S.token = null;
    S.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(message);
  }

  function showSignIn(message) {
    $("#nav").hidden = true;
    $("#signout").hidden = true;
    $("#whoami").hidden = true;
    say("");
    document.title = t("signin.title") + " · " + t("app.title");
    const form = h(
      "form",
      { class: "panel", id: "signin-form", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, t("signin.title")),
      message ? h("p", { class: "warning", role: "alert" }, message) : null,
      S.config.sign_in
        ? [
            h("div", { class: "actions" },
              h("button", { type: "button", id: "sso", onclick: () => startProviderSignIn() }, t("signin.provider")),
            ),
            h("p", { class: "meta" }, t("signin.or_token")),
          ]
        : null,
      h("label", { for: "token" }, t("signin.token")),
      h("input", {
        id: "token",
        type: "password",
        autocomplete: "off",
        spellcheck: "false",
        required: true,
        "aria-describedby": "token-help",
      }),
      h("p", { class: "meta", id: "token-help" }, t("signin.token_help")),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "signin" }, t("signin.submit"))),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      S.token = $("#token").value.trim();
      try {
        S.me = await api("/api/v1/me", { signingIn: true });
      } catch (e) {
        S.token = null;
        showSignIn(e.status === 401 ? t("signin.refused") : e.message);
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, S.token);
      if (location.hash.startsWith("#/signin") || !location.hash) location.hash = "#/queue";
      else route();
    });
    show(form);
  }

  // ---- Routing -------------------------------------------------------------

  async function route() {
    for (const url of S.blobs.splice(0)) URL.revokeObjectURL(url);
    if (!S.token) {
      showSignIn();
      return;
    }
    if (!S.me) {
      try {
        S.me = await api("/api/v1/me");
      } catch (e) {
        if (e.status !== 401) say(e.message, true);
        return;
      }
    }
    showChrome();
    const parts = (location.hash || "#/queue").slice(2).split("/").map(decodeURIComponent);
    const main = $("#main");
    show(h("p", { class: "meta" }, t("common.loading")));
    say("");
    try {
      if (parts[0] === "inspections" && parts[1]) await showInspection(parts[1]);
      else if (parts[0] === "vehicles" && parts[1]) await showVehicle(parts[1]);
      else if (parts[0] === "fleet") await showFleet();
      else await showQueue();
    } catch (e) {
      if (e.status === 401) return;
      show(h("h1", {}, t("error.title")), h("p", { class: "warning", role: "alert" }, e.message));
    }
    for (const a of document.querySelectorAll("#nav a")) {
      const current = a.getAttribute("href") === "#/" + (parts[0] === "fleet" ? "fleet" : "queue");
      if (current) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (!S.firstRoute) main.focus();
    S.firstRoute = false;
  }

  function showChrome() {
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    const who = $("#whoami");
    who.hidden = false;
    who.textContent = t("nav.signed_in", { who: S.me.actor, role: tk("role." + S.me.role) });
  }

  const canReview = () => S.me && S.me.role !== "viewer";

  // ---- The queue -----------------------------------------------------------

  const count = (item, status) => (item.finding_counts.find((c) => c.status === status) || { count: 0 }).count;
  const SHOWN_COUNTS = ["new", "possible_new_damage", "confirmed", "rejected", "pre_existing"];

  function inspectionCard(item) {
    return h(
      "li",
      {},
      h(
        "a",
        { class: "card", href: "#/inspections/" + item.id, "data-inspection": item.id },
        h("div", { class: "plate" }, item.plate || t("inspection.no_plate")),
        h(
          "div",
          { class: "meta" },
          [tk("kind." + (item.kind || "unknown")), item.site, item.device, when(item.at)].join(" · "),
        ),
        h(
          "div",
          { class: "badges" },
          item.finding_counts
            .filter((c) => SHOWN_COUNTS.includes(c.status))
            .map((c) => h("span", { class: "badge " + c.status }, tk("count." + c.status, { n: c.count }))),
          item.reviewed ? h("span", { class: "badge rejected" }, t("inspection.reviewed")) : null,
          item.incomplete ? h("span", { class: "badge possible_new_damage" }, t("inspection.incomplete")) : null,
        ),
      ),
    );
  }

  async function showQueue() {
    document.title = t("queue.title") + " · " + t("app.title");
    const page = await api("/api/v1/inspections?review=pending&sort=oldest&limit=200");
    const waiting = page.items.filter((i) => count(i, "new") + count(i, "possible_new_damage") > 0);
    const rest = page.items.filter((i) => !waiting.includes(i));
    const search = h(
      "form",
      { class: "panel row", role: "search", id: "plate-search" },
      h("div", {}, h("label", { for: "plate" }, t("queue.find_plate")), h("input", { id: "plate", autocomplete: "off", required: true })),
      h("button", { type: "submit" }, t("queue.find")),
    );
    search.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = "#/vehicles/" + encodeURIComponent($("#plate").value.trim());
    });
    show(
      h("h1", {}, t("queue.title")),
      h("p", {}, t("queue.explain")),
      search,
      h("h2", { id: "waiting" }, t("queue.waiting", { n: waiting.length })),
      waiting.length
        ? h("ul", { class: "cards", "aria-labelledby": "waiting", id: "queue" }, waiting.map(inspectionCard))
        : h("p", { class: "panel" }, t("queue.empty")),
      rest.length ? [h("h2", { id: "rest" }, t("queue.rest", { n: rest.length })), h("ul", { class: "cards", "aria-labelledby": "rest" }, rest.map(inspectionCard))] : null,
    );
  }

  // ---- One inspection ------------------------------------------------------

  const undecidedStatuses = ["new", "possible_new_damage"];
  const className = (c) => tk("class." + c, {}, c.replace(/_/g, " "));
  const findingName = (f) => (f.reference ? f.reference + " · " : "") + className(f.class);

  async function showInspection(id) {
    const d = await api("/api/v1/inspections/" + encodeURIComponent(id));
    const plate = (d.vehicle_plate && d.vehicle_plate.display) || d.plate || t("inspection.no_plate");
    document.title = plate + " · " + t("app.title");
    const undecided = new Set(d.review.undecided);
    const findings = [...d.findings].sort(
      (a, b) => undecided.has(b.id) - undecided.has(a.id) || (a.reference || "").localeCompare(b.reference || "", undefined, { numeric: true }),
    );
    const frameOf = new Map(d.frames.map((f) => [f.sha256, f]));
    const facts = [
      [t("inspection.kind"), tk("kind." + (d.kind || "unknown"))],
      [t("inspection.site"), d.site + " · " + d.device],
      [t("inspection.started"), when(d.started_at || d.at)],
      [t("inspection.status"), tk("istatus." + d.status, {}, d.status)],
      [t("inspection.frames"), t("inspection.frames_count", { received: d.frames_received, expected: d.frames_expected ?? "?" })],
    ];
    if (d.comparison && d.comparison.pickup_inspection_id) {
      facts.push([t("inspection.pickup"), h("a", { href: "#/inspections/" + d.comparison.pickup_inspection_id, id: "pickup-link" }, t("inspection.open_pickup"))]);
    } else if (d.comparison) {
      facts.push([t("inspection.pickup"), tk("comparison." + d.comparison.state, {}, d.comparison.state)]);
    }
    if (d.plate) facts.push([t("inspection.vehicle"), h("a", { href: "#/vehicles/" + encodeURIComponent(d.plate) }, t("inspection.history"))]);
    show(
      h("h1", { id: "inspection-title" }, plate, " — ", tk("kind." + (d.kind || "unknown"))),
      h("section", { class: "panel", "aria-label": t("inspection.facts") }, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      d.incomplete ? h("p", { class: "warning" }, t("inspection.incomplete_detail", { what: d.incomplete })) : null,
      d.erased_at ? h("p", { class: "warning" }, t("inspection.erased", { at: when(d.erased_at) })) : null,
      canReview() ? null : h("p", { class: "warning", "data-read-only": "" }, t("detail.read_only")),
      h(
        "div",
        { class: "detail" },
        h(
          "section",
          { "aria-labelledby": "findings-title" },
          h("h2", { id: "findings-title" }, t("findings.title", { n: d.findings.length })),
          findings.length ? findings.map((f) => findingCard(d, f, undecided.has(f.id), frameOf.get(f.sha256))) : h("p", { class: "panel" }, t("findings.none")),
        ),
        h("div", {}, reviewPanel(d, undecided), auditPanel(d), reportPanel(d)),
      ),
      framesPanel(d),
    );
  }

  function findingCard(d, f, isUndecided, frame) {
    const titleId = "finding-" + f.id;
    const pairId = "pair-" + f.id;
    const card = h(
      "article",
      { class: "finding" + (isUndecided ? " undecided" : ""), "aria-labelledby": titleId, "data-finding": f.id },
      h("h3", { id: titleId }, findingName(f)),
      h("p", { class: "meta" }, [f.position, f.camera, t("finding.confidence", { p: percent(f.confidence) }), tk("source." + f.source, {}, f.source)].join(" · ")),
      h(
        "div",
        { class: "badges" },
        h("span", { class: "badge " + f.status, "data-status": f.status }, tk("fstatus." + f.status, {}, f.status)),
        f.worker_status ? h("span", { class: "badge" }, t("finding.worker_said", { status: tk("fstatus." + f.worker_status, {}, f.worker_status) })) : null,
      ),
      f.note ? h("p", {}, h("strong", {}, t("finding.note") + ": "), f.note) : null,
    );
    const buttons = h("div", { class: "actions" });
    if (f.pair_url) {
      const figure = h("figure", { class: "compare", id: pairId, hidden: true });
      const toggle = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-controls": pairId, "data-action": "compare" }, t("finding.compare"));
      toggle.addEventListener("click", () => {
        const open = figure.hidden;
        figure.hidden = !open;
        toggle.setAttribute("aria-expanded", String(open));
        if (open && !figure.firstChild) {
          const alt = t("finding.pair_alt", { name: findingName(f), position: f.position });
          figure.append(picture(f.pair_url, alt), h("figcaption", {}, t("finding.pair_caption")));
          figure.querySelector("img").addEventListener("click", (e) => openViewer(e.target.src, alt));
        }
      });
      buttons.append(toggle);
      card.append(buttons, figure);
    } else {
      card.append(buttons);
    }
    if (frame && frame.state === "ok") {
      buttons.append(
        h("button", {
          type: "button",
          class: "secondary",
          "data-action": "frame",
          onclick: async () => openViewer(await blobUrl(frame.annotated_url), t("frames.alt", { position: frame.position, camera: frame.camera })),
        }, t("finding.show_frame")),
      );
    }
    if (canReview() && !d.review.charge && f.status !== "baseline") {
      const noteId = "note-" + f.id;
      const decide = async (decision) => {
        const note = $("#" + CSS.escape(noteId)).value.trim();
        if (decision === "annotate" && !note) {
          say(t("finding.note_needed"), true);
          $("#" + CSS.escape(noteId)).focus();
          return;
        }
        try {
          await api("/api/v1/inspections/" + d.id + "/findings/" + f.id + "/review", {
            method: "POST",
            body: note ? { decision, note } : { decision },
          });
        } catch (e) {
          say(e.message, true);
          return;
        }
        await showInspection(d.id);
        say(t("finding.saved", { name: findingName(f), decision: tk("decision." + decision) }));
        const again = document.getElementById(titleId);
        if (again) {
          again.setAttribute("tabindex", "-1");
          again.focus();
        }
      };
      card.append(
        h("label", { for: noteId }, t("finding.comment")),
        h("textarea", { id: noteId, maxlength: 2000 }),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "confirm", "data-action": "confirm", onclick: () => decide("confirm") }, t("finding.confirm")),
          h("button", { type: "button", class: "reject", "data-action": "reject", onclick: () => decide("reject") }, t("finding.reject")),
          h("button", { type: "button", class: "secondary", "data-action": "annotate", onclick: () => decide("annotate") }, t("finding.annotate")),
        ),
      );
    }
    return card;
  }

  function reviewPanel(d, undecided) {
    const panel = h("section", { class: "panel", "aria-labelledby": "review-title", id: "review" }, h("h2", { id: "review-title" }, t("review.title")));
    if (d.review.reviewed) {
      panel.append(h("p", {}, t("review.reviewed_by", { by: d.review.reviewed.by, at: when(d.review.reviewed.at) })));
    } else if (canReview()) {
      panel.append(
        h("p", {}, undecided.size ? t("review.undecided", { n: undecided.size }) : t("review.ready")),
        h("label", { for: "review-note" }, t("review.note")),
        h("textarea", { id: "review-note", maxlength: 2000 }),
        h(
          "div",
          { class: "actions" },
          h("button", {
            type: "button",
            id: "mark-reviewed",
            disabled: undecided.size > 0,
            onclick: async () => {
              const note = $("#review-note").value.trim();
              try {
                await api("/api/v1/inspections/" + d.id + "/review", { method: "POST", body: note ? { note } : {} });
              } catch (e) {
                say(e.message, true);
                return;
              }
              await showInspection(d.id);
              say(t("review.done"));
            },
          }, t("review.mark")),
        ),
      );
    } else {
      panel.append(h("p", {}, t("review.pending")));
    }
    const confirmed = d.findings.filter((f) => f.status === "confirmed");
    if (d.review.charge) {
      const c = d.review.charge;
      panel.append(h("p", { id: "charge" }, t("charge.approved", { by: c.approved_by, at: when(c.approved_at), n: c.findings.length })));
    } else if (canReview() && d.kind === "return" && confirmed.length) {
      const fieldset = h(
        "fieldset",
        {},
        h("legend", {}, t("charge.title")),
        confirmed.map((f) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: f.id, checked: true, name: "charge" }), findingName(f))),
        h("label", { for: "charge-note" }, t("charge.note")),
        h("textarea", { id: "charge-note", maxlength: 2000 }),
        h("div", { class: "actions" },
          h("button", {
            type: "button",
            id: "approve-charge",
            disabled: !d.review.reviewed,
            onclick: async () => {
              const ids = [...document.querySelectorAll("input[name=charge]:checked")].map((i) => i.value);
              const note = $("#charge-note").value.trim();
              try {
                await api("/api/v1/inspections/" + d.id + "/charge", { method: "POST", body: note ? { findings: ids, note } : { findings: ids } });
              } catch (e) {
                say(e.message, true);
                return;
              }
              await showInspection(d.id);
              say(t("charge.done"));
            },
          }, t("charge.approve")),
        ),
        d.review.reviewed ? null : h("p", { class: "meta" }, t("charge.after_review")),
      );
      panel.append(fieldset);
    }
    return panel;
  }

  function auditPanel(d) {
    const byId = new Map(d.findings.map((f) => [f.id, f]));
    const entries = d.review.actions.map((a) => {
      const f = byId.get(a.finding_id);
      return h(
        "li",
        { "data-decision": a.decision },
        h("strong", {}, tk("decision." + a.decision, {}, a.decision)),
        " · ",
        f ? findingName(f) : a.finding_id,
        " · ",
        t("audit.change", { before: tk("fstatus." + a.status_before, {}, a.status_before), after: tk("fstatus." + a.status_after, {}, a.status_after) }),
        h("div", { class: "meta" }, t("audit.by", { by: a.by, at: when(a.at) })),
        a.note ? h("div", {}, "“" + a.note + "”") : null,
      );
    });
    if (d.review.reviewed) {
      const r = d.review.reviewed;
      entries.push(h("li", { "data-decision": "reviewed" }, h("strong", {}, t("inspection.reviewed")), h("div", { class: "meta" }, t("audit.by", { by: r.by, at: when(r.at) })), r.note ? h("div", {}, "“" + r.note + "”") : null));
    }
    if (d.review.charge) {
      const c = d.review.charge;
      entries.push(h("li", { "data-decision": "charge" }, h("strong", {}, t("charge.title")), h("div", { class: "meta" }, t("audit.by", { by: c.approved_by, at: when(c.approved_at) })), c.note ? h("div", {}, "“" + c.note + "”") : null));
    }
    return h(
      "section",
      { class: "panel", "aria-labelledby": "audit-title" },
      h("h2", { id: "audit-title" }, t("audit.title")),
      entries.length ? h("ol", { class: "timeline", id: "audit" }, entries) : h("p", { id: "audit" }, t("audit.none")),
    );
  }

  function reportPanel(d) {
    const panel = h("section", { class: "panel", "aria-labelledby": "report-title" }, h("h2", { id: "report-title" }, t("report.title")));
    const r = d.report;
    if (!r) {
      panel.append(h("p", {}, t("report.none")));
      return panel;
    }
    panel.append(
      h("p", { class: "meta" }, t("report.written", { at: when(r.created_at), language: tk("language." + r.language, {}, r.language) })),
      h("p", { class: "narrative" }, r.narrative),
      h(
        "div",
        { class: "actions" },
        ["pdf", "html", "markdown"].map((format) =>
          h("button", {
            type: "button",
            class: "secondary",
            "data-format": format,
            onclick: () =>
              download("/api/v1/inspections/" + d.id + "/report/" + format, "inspection-" + d.id + "." + (format === "markdown" ? "md" : format)).catch((e) => say(e.message, true)),
          }, tk("report.download_" + format)),
        ),
      ),
    );
    return panel;
  }

  function framesPanel(d) {
    const frames = [...d.frames].sort((a, b) => a.rank - b.rank || a.camera.localeCompare(b.camera));
    const figure = (f) => {
      const label = t("frames.alt", { position: f.position, camera: f.camera });
      const caption = h("figcaption", {}, [f.position, f.camera, tk("frame." + f.state, {}, f.state), ...f.reasons].join(" · "));
      if (f.state !== "ok") return h("figure", { "data-frame": f.sha256 }, h("p", { class: "warning" }, label), caption);
      const img = picture(f.annotated_url, label);
      const open = h("button", { type: "button", class: "thumb", "aria-label": t("frames.open", { what: label }) }, img);
      open.addEventListener("click", () => img.src && openViewer(img.src, label));
      return h("figure", { "data-frame": f.sha256 }, open, caption);
    };
    const best = frames.filter((f) => f.rank === 1);
    const more = frames.filter((f) => f.rank !== 1);
    const section = h("section", { class: "panel", "aria-labelledby": "frames-title" }, h("h2", { id: "frames-title" }, t("frames.title")), h("div", { class: "frames", id: "frames" }, best.map(figure)));
    if (more.length) {
      const details = h("details", {}, h("summary", {}, t("frames.more", { n: more.length })));
      details.addEventListener("toggle", () => {
        if (details.open && details.children.length === 1) details.append(h("div", { class: "frames" }, more.map(figure)));
      }, { once: false });
      section.append(details);
    }
    return section;
  }

  // ---- Zoomable picture ----------------------------------------------------

  let zoom = 1;
  function setZoom(z) {
    zoom = Math.min(8, Math.max(1, z));
    $("#viewer-img").style.width = zoom * 100 + "%";
    $("#zoom-level").textContent = Math.round(zoom * 100) + "%";
  }
  function openViewer(src, title) {
    $("#viewer-title").textContent = title;
    const img = $("#viewer-img");
    img.src = src;
    img.alt = title;
    setZoom(1);
    $("#viewer").showModal();
  }

  // ---- A vehicle -----------------------------------------------------------

  async function showVehicle(plate) {
    const v = await api("/api/v1/vehicles/" + encodeURIComponent(plate) + "?limit=50");
    document.title = v.display + " · " + t("app.title");
    const list = h("ul", { class: "cards", "aria-labelledby": "history-title" }, v.inspections.map(inspectionCard));
    const main = $("#main");
    show(
      h("h1", {}, v.display),
      h("section", { class: "panel" }, h("dl", { class: "facts" },
        h("dt", {}, t("vehicle.country")), h("dd", {}, v.country),
        h("dt", {}, t("vehicle.first_seen")), h("dd", {}, when(v.first_seen_at)),
        h("dt", {}, t("vehicle.last_seen")), h("dd", {}, when(v.last_seen_at)),
      )),
      h("h2", { id: "history-title" }, t("vehicle.inspections")),
      list,
    );
    let cursor = v.next_cursor;
    if (cursor) {
      const more = h("button", { type: "button", class: "secondary" }, t("common.more"));
      more.addEventListener("click", async () => {
        const next = await api("/api/v1/vehicles/" + encodeURIComponent(plate) + "?limit=50&cursor=" + encodeURIComponent(cursor));
        list.append(...next.inspections.map(inspectionCard));
        cursor = next.next_cursor;
        if (!cursor) more.remove();
      });
      main.append(h("div", { class: "actions" }, more));
    }
  }

  // ---- The fleet -----------------------------------------------------------

  const BACKLOG_AGE_S = 900;
  const BACKLOG_EVENTS = 500;
  const CLOCK_LIMIT_S = 60;

  async function showFleet() {
    document.title = t("fleet.title") + " · " + t("app.title");
    const sites = await api("/api/v1/sites");
    const devices = [];
    let cursor = null;
    for (let i = 0; i < 50; i++) {
      const page = await api("/api/v1/devices?limit=200" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      devices.push(...page.items);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    const down = (d) => d.state === "offline" || d.state === "silent";
    const backlog = (d) => (d.outbox_oldest_age_seconds || 0) > BACKLOG_AGE_S || (d.outbox_events || 0) > BACKLOG_EVENTS;
    const skewed = (d) => Math.abs(d.clock_offset_seconds || 0) > CLOCK_LIMIT_S;
    const trouble = (d) => down(d) || backlog(d) || skewed(d);
    devices.sort((a, b) => trouble(b) - trouble(a) || a.site.localeCompare(b.site) || a.device.localeCompare(b.device));
    const age = (s) => (s === null || s === undefined ? "—" : s < 120 ? t("fleet.seconds", { n: number(s) }) : s < 7200 ? t("fleet.minutes", { n: number(Math.round(s / 60)) }) : t("fleet.hours", { n: number(Math.round(s / 3600)) }));
    const rows = devices.map((d) =>
      h(
        "tr",
        { class: trouble(d) ? "alert" : null, "data-device": d.site + "/" + d.device },
        h("td", {}, d.site),
        h("th", { scope: "row" }, d.device),
        h("td", {}, h("span", { class: "badge " + d.state }, tk("device." + d.state, {}, d.state))),
        h("td", {}, when(d.last_seen_at)),
        h("td", { class: backlog(d) ? "alert" : null, "data-backlog": backlog(d) ? "" : null }, d.outbox_events === null || d.outbox_events === undefined ? "—" : number(d.outbox_events)),
        h("td", { class: backlog(d) ? "alert" : null }, age(d.outbox_oldest_age_seconds)),
        h("td", { class: skewed(d) ? "alert" : null }, d.clock_offset_seconds === null || d.clock_offset_seconds === undefined ? "—" : number(Math.round(d.clock_offset_seconds)) + " s"),
        h("td", {}, d.version || "—"),
      ),
    );
    const heads = ["fleet.site", "fleet.device", "fleet.state", "fleet.last_seen", "fleet.outbox", "fleet.oldest", "fleet.clock", "fleet.version"];
    show(
      h("h1", {}, t("fleet.title")),
      h("p", { class: "panel", id: "fleet-summary" }, t("fleet.summary", { total: devices.length, down: devices.filter(down).length, backlog: devices.filter(backlog).length })),
      h("div", { class: "table-wrap" },
        h("table", { id: "devices" },
          h("caption", {}, t("fleet.devices")),
          h("thead", {}, h("tr", {}, heads.map((k) => h("th", { scope: "col" }, tk(k))))),
          h("tbody", {}, rows),
        ),
      ),
      h("div", { class: "table-wrap" },
        h("table", { id: "sites" },
          h("caption", {}, t("fleet.sites")),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("fleet.site")), h("th", { scope: "col" }, t("fleet.devices_count")), h("th", { scope: "col" }, t("fleet.last_seen")))),
          h("tbody", {}, sites.map((s) => h("tr", {}, h("th", { scope: "row" }, s.site), h("td", {}, number(s.devices)), h("td", {}, when(s.last_seen_at))))),
        ),
      ),
    );
  }

  // ---- Start ---------------------------------------------------------------

  async function start() {
    try {
      S.config = await (await fetch("/ui/config.json")).json();
    } catch (_) {
      // the defaults: token sign-in only
    }
    await loadTexts(preferredLang());
    $("#lang").addEventListener("change", async (event) => {
      await loadTexts(event.target.value);
      route();
    });
    $("#signout").addEventListener("click", () => signOut(t("signin.signed_out")));
    $("#skip").addEventListener("click", (event) => {
      event.preventDefault();
      $("#main").focus();
    });
    $("#zoom-in").addEventListener("click", () => setZoom(zoom * 1.5));
    $("#zoom-out").addEventListener("click", () => setZoom(zoom / 1.5));
    $("#viewer-close").addEventListener("click", () => $("#viewer").close());
    $("#viewer-pane").addEventListener("wheel", (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      setZoom(zoom * (event.deltaY < 0 ? 1.25 : 0.8));
    }, { passive: false });
    window.addEventListener("hashchange", route);
    const failed = await finishProviderSignIn();
    if (failed) {
      showSignIn(failed);
      return;
    }
    route();
  }

  start();
})();
