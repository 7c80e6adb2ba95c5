// datamill explore: small progressive enhancements (no inline scripts: the CSP forbids them).
// Rows of a table with data-href open that page when clicked.
document.addEventListener("click", function (event) {
  var row = event.target.closest("tr[data-href]");
  if (row && !event.target.closest("a, button, input, select")) {
    window.location.assign(row.getAttribute("data-href"));
  }
});
