// After a boosted (htmx) navigation the page changes without a load, so keyboard and
// screen-reader focus would stay on the link that was followed. Put it on the new page's
// main content, where a full page load would have started reading.
document.addEventListener("htmx:afterSettle", function (event) {
  if (!event.detail || !event.detail.boosted) {
    return;
  }
  var main = document.getElementById("main");
  if (main) {
    main.focus({ preventScroll: true });
  }
});
