// vmta console: refresh the live part of the page every few seconds, and send the
// operator's actions with the CSRF token (read from its cookie) in X-CSRF-Token.
"use strict";

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, value] = part.trim().split("=");
    if (name === "vmta_console_csrf") return decodeURIComponent(value || "");
  }
  return "";
}

async function refresh(live) {
  const response = await fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/console");
    return;
  }
  if (response.ok) {
    live.innerHTML = await response.text();
    live.dataset.refreshedAt = String(Date.now());
  }
}

function flash(text, ok) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = text;
  box.className = ok ? "ok" : "problem";
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) return;
  event.preventDefault();
  const body = new URLSearchParams(new FormData(form));
  body.delete("csrf_token"); // the header carries it
  const response = await fetch(form.action, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrfToken(), "Content-Type": "application/x-www-form-urlencoded" },
    body: body,
  });
  const text = await response.text();
  flash(text, response.ok);
  if (response.ok && form.closest("#live") === null) form.reset();
  const live = document.getElementById("live");
  if (live) await refresh(live);
});

window.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live) return;
  const every = Number(live.dataset.every) || 3000;
  const tick = async () => {
    try {
      await refresh(live);
    } finally {
      window.setTimeout(tick, every);
    }
  };
  tick();
});
