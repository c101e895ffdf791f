// gitvault serve: blame on demand and the live timeline. Plain JS, no libraries.
// Every value goes into the page with textContent, never as HTML.
"use strict";

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function commitLink(id) {
  return el("a", id.slice(0, 12), { href: "/commit/" + encodeURIComponent(id), class: "commit" });
}

async function blame(button) {
  const tree = document.getElementById("tree");
  const out = button.parentElement.querySelector(".blamed");
  out.textContent = "…";
  const query = new URLSearchParams({ path: button.dataset.path, rev: tree.dataset.rev });
  const response = await fetch("/api/blame?" + query.toString());
  const data = await response.json();
  out.textContent = "";
  if (!response.ok) { out.textContent = data.message; return; }
  for (const b of data.slice(0, 5)) {
    const line = el("span", null, { class: "blame-entry" });
    const conf = b.confidence === null ? "" : ", confidence " + b.confidence;
    line.append(el("b", b.agent), document.createTextNode(
      " · " + b.source + conf + " · " + b.iso.slice(0, 19).replace("T", " ")));
    line.append(commitLink(b.commit));
    out.append(line);
  }
}

function liveTimeline() {
  const live = document.getElementById("live");
  const body = document.querySelector("#timeline tbody");
  if (!live || !body || !window.EventSource) return;
  const status = document.getElementById("live-status");
  let seen = 0;
  const source = new EventSource(live.dataset.events);
  source.onopen = () => { status.textContent = "on, new checkins appear here"; status.classList.add("on"); };
  source.onerror = () => { status.textContent = "reconnecting…"; status.classList.remove("on"); };
  source.addEventListener("commit", (event) => {
    const e = JSON.parse(event.data);
    const row = el("tr", null, { class: "new" + (e.merged ? " merge" : ""), "data-agent": e.agent });
    row.append(el("td", (e.iso || "?").slice(0, 19).replace("T", " "), { class: "when", title: e.iso || "" }));
    const cell = el("td");
    cell.append(commitLink(e.commit));
    if (e.merged) cell.append(document.createTextNode(" "), el("span", "merge", { class: "tag" }));
    row.append(cell, el("td", e.agent, { class: "agent" }), el("td", e.source),
      el("td", e.confidence === null ? "" : e.confidence), el("td", e.changed.join(", ")),
      el("td", e.justification, { class: "why" }));
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.prepend(row);
    seen += 1;
    status.textContent = "on, " + seen + " new since this page opened";
  });
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (target instanceof HTMLElement && target.matches("button.blame")) blame(target);
});
document.addEventListener("DOMContentLoaded", liveTimeline);
