// The console's only script (served from /console/static, so the CSP allows no inline script). It adds keyboard
// shortcuts and one-at-a-time image reveal to the review queue; every action is still a plain form and button.
"use strict";
(() => {
  const cards = Array.from(document.querySelectorAll(".card"));
  let current = 0;

  function select(index) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, index));
    cards.forEach((card, n) => card.classList.toggle("current", n === current));
    cards[current].focus();
    cards[current].scrollIntoView({ block: "nearest" });
  }

  function setRevealed(card, revealed) {
    card.classList.toggle("revealed", revealed);
    const button = card.querySelector("[data-reveal]");
    if (button) {
      button.setAttribute("aria-pressed", String(revealed));
      button.textContent = revealed ? "Hide image (v)" : "Reveal image (v)";
    }
  }

  // Never more than one image revealed: revealing one hides the rest.
  function toggleReveal(card) {
    if (!card || !card.querySelector("[data-reveal]")) return;
    const reveal = !card.classList.contains("revealed");
    cards.forEach((other) => setRevealed(other, false));
    setRevealed(card, reveal);
  }

  function submit(card, key) {
    const button = card && card.querySelector(`button[data-key="${key}"]`);
    if (button) button.form.requestSubmit(button);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-reveal]");
    if (button) toggleReveal(button.closest(".card"));
  });

  document.addEventListener("focusin", (event) => {
    const card = event.target.closest(".card");
    if (card && cards.indexOf(card) !== current) {
      current = cards.indexOf(card);
      cards.forEach((other, n) => other.classList.toggle("current", n === current));
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches("textarea, input, select")) {
      if (event.key === "Escape") {
        target.blur();
        select(current);
      }
      return;
    }
    if (target.matches("button, a") && (event.key === "Enter" || event.key === " ")) return;
    const card = cards[current];
    switch (event.key) {
      case "j":
      case "ArrowDown":
        select(current + 1);
        break;
      case "k":
      case "ArrowUp":
        select(current - 1);
        break;
      case "v":
        toggleReveal(card);
        break;
      case "n":
        if (card) card.querySelector("textarea").focus();
        break;
      case "x":
        if (card) card.querySelector("input.select").click();
        break;
      case "b": {
        const bulk = document.getElementById("bulk-submit");
        if (bulk) bulk.form.requestSubmit(bulk);
        break;
      }
      case "c":
      case "r":
      case "f":
      case "a":
        submit(card, event.key);
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  select(0);
})();
