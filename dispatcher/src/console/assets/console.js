// ScanFleet console: live updates over Server-Sent Events.
//
// The page names its stream in <body data-live-src>. The server sends two
// kinds of event, both JSON:
//   values   {"key": "text", ...}: sets the text of every [data-live="key"];
//   fragment {"id", "html", "prepend_to"?}: replaces the element with that id
//            by server-rendered (escaped) HTML, or, when there is none yet and
//            the container named by prepend_to is marked data-live="prepend",
//            inserts it at the top of that container.
// Text goes in through textContent; only server-rendered fragments are
// parsed as HTML. EventSource reconnects by itself after an error.
"use strict";

(function () {
  const source = document.body && document.body.dataset.liveSrc;
  const badge = document.getElementById("live-status");
  if (!source || typeof EventSource === "undefined") return;

  function show(state) {
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = state === "open" ? "live" : state;
  }

  const events = new EventSource(source);
  events.onopen = () => show("open");
  events.onerror = () => show(events.readyState === EventSource.CLOSED ? "closed" : "reconnecting");

  events.addEventListener("values", (event) => {
    const values = JSON.parse(event.data);
    for (const [key, text] of Object.entries(values)) {
      for (const el of document.querySelectorAll('[data-live="' + CSS.escape(key) + '"]')) {
        el.textContent = text;
      }
    }
  });

  events.addEventListener("fragment", (event) => {
    const update = JSON.parse(event.data);
    const existing = document.getElementById(update.id);
    if (existing) {
      existing.outerHTML = update.html;
      return;
    }
    const container = update.prepend_to && document.getElementById(update.prepend_to);
    if (container && container.dataset.live === "prepend") {
      const empty = container.querySelector(".empty");
      if (empty) empty.remove();
      container.insertAdjacentHTML("afterbegin", update.html);
    }
  });

  // Tell the server we are leaving, so it does not keep a stream for nobody.
  window.addEventListener("pagehide", () => events.close());
})();
