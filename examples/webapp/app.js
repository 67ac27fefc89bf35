// Runs in the browser: fetches data by a relative URL and writes what it found into the page,
// so a test can read the result from the DOM.
"use strict";

async function main() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("data/greeting.json");
    const data = await res.json();
    status.textContent = "the script ran: " + data.greeting;
    status.dataset.ok = "yes";
  } catch (e) {
    status.textContent = "the script failed: " + e;
  }
}

function checkImage() {
  const img = document.getElementById("logo");
  const out = document.getElementById("image");
  const show = () => {
    out.textContent = img.naturalWidth > 0
      ? "image " + img.naturalWidth + "x" + img.naturalHeight
      : "the image is broken";
  };
  if (img.complete) show(); else { img.onload = show; img.onerror = show; }
}

checkImage();
main();
