// The reply box, improved: a canned answer fills the text box without a reload, the counter asks
// the server for characters and SMS parts while staff type (the rule lives in one place, on the
// server), and only the chosen channel's warning shows. Without this file every form still works.
(function () {
  "use strict";

  const form = document.querySelector("form.replybox-form");
  if (!form) {
    return;
  }
  const text = form.querySelector("#replybox-text");
  const count = form.querySelector("#replybox-count");
  const value = count.querySelector(".replybox-count-value");
  const note = count.querySelector(".replybox-count-note");
  const resolve = form.querySelector("#replybox-resolve");
  const radios = Array.from(form.querySelectorAll("input[name=channel]"));
  const canned = document.querySelector("form.replybox-canned");
  const csrf = form.querySelector("input[name=csrf]").value;
  let asked = 0;
  let timer = null;

  function chosen() {
    return radios.find(function (r) { return r.checked; }) || radios[0];
  }

  function fill(template, counted) {
    return template.replace("{characters}", counted.characters).replace("{parts}", counted.parts);
  }

  async function recount() {
    const mode = chosen() ? chosen().dataset.counter : "";
    if (!mode) {
      return;
    }
    const mine = ++asked;
    const body = new URLSearchParams({ csrf: csrf, text: text.value.replace(/\r\n/g, "\n") });
    try {
      const response = await fetch(form.dataset.partsUrl, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok || mine !== asked) {
        return;
      }
      const counted = await response.json();
      const current = chosen().dataset.counter;
      if (mine === asked && current) {
        value.textContent = fill(count.dataset[current], counted);
      }
    } catch (error) {
      // The count is a help; the answer can be sent without it.
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(recount, 250);
  }

  function showChannel() {
    const current = chosen();
    const mode = current ? current.dataset.counter : "";
    count.hidden = !mode;
    document.querySelectorAll(".replybox-about").forEach(function (about) {
      about.hidden = !current || about.dataset.channel !== current.value;
    });
    if (canned) {
      canned.querySelector("input[name=channel]").value = current ? current.value : "";
    }
    if (mode) {
      recount();
    }
  }

  function showNote() {
    if (note && resolve) {
      note.hidden = !resolve.checked;
    }
  }

  text.addEventListener("input", later);
  radios.forEach(function (radio) { radio.addEventListener("change", showChannel); });
  if (resolve) {
    resolve.addEventListener("change", showNote);
  }

  if (canned) {
    const select = canned.querySelector("select");
    const put = function () {
      const option = select.options[select.selectedIndex];
      if (option && option.dataset.text) {
        text.value = option.dataset.text;
        recount();
      }
    };
    select.addEventListener("change", put);
    canned.addEventListener("submit", function (event) {
      event.preventDefault();
      put();
      text.focus();
    });
  }

  const files = form.querySelector("#replybox-files");
  const filesError = form.querySelector("#replybox-files-error");
  files.addEventListener("change", function () {
    const limit = Number(files.dataset.maxBytes);
    const big = Array.from(files.files).find(function (f) { return f.size > limit; });
    const message = big
      ? files.dataset.tooBig.replace("{name}", big.name).replace("{size}", files.dataset.maxSize)
      : "";
    files.setCustomValidity(message);
    filesError.textContent = message;
    filesError.hidden = !message;
  });

  showChannel();
  showNote();
})();
