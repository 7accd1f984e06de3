// featvis microscope: sort a layer's cards, show or hide the heatmaps. Vanilla JS, no network.
(function () {
  "use strict";

  // a card's number for `key` (data-activation, data-ratio, data-order); null when it has none
  function value(card, key) {
    var text = card.dataset[key];
    var number = text === undefined || text === "" ? NaN : Number(text);
    return Number.isFinite(number) ? number : null;
  }

  // largest first for a measure (cards without one last), the run's order for "order" and ties
  function compare(key) {
    return function (a, b) {
      if (key !== "order") {
        var va = value(a, key), vb = value(b, key);
        if (va !== vb) {
          if (va === null) return 1;
          if (vb === null) return -1;
          return vb - va;
        }
      }
      return value(a, "order") - value(b, "order");
    };
  }

  function sortCards(grid, key) {
    var cards = Array.prototype.slice.call(grid.children);
    cards.sort(compare(key));
    var fragment = document.createDocumentFragment();
    cards.forEach(function (card) { fragment.appendChild(card); });
    grid.appendChild(fragment);
  }

  var grid = document.getElementById("cards");
  var buttons = document.querySelectorAll("button[data-sort]");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      sortCards(grid, button.dataset.sort);
      buttons.forEach(function (other) { other.setAttribute("aria-pressed", String(other === button)); });
    });
  });

  var heat = document.getElementById("show-heat");
  if (heat) {
    heat.addEventListener("change", function () {
      document.body.classList.toggle("hide-heat", !heat.checked);
    });
  }
})();
