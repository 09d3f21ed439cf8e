// Registering a ticket by hand (inbox/web/register.py). The form works without this script;
// it only adds the "use my location" button for tablets in the field, says at once when a
// photo is too big, and keeps a second click from sending the form twice (the server makes
// one ticket of it anyway). Its words come from the page, in the page's language.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.register");
  if (!form) {
    return;
  }

  const button = document.getElementById("use-location");
  const status = document.getElementById("location-status");
  const latitude = document.getElementById("latitude");
  const longitude = document.getElementById("longitude");
  if (button && status && latitude && longitude && "geolocation" in navigator) {
    button.hidden = false;
    button.addEventListener("click", () => {
      status.textContent = button.dataset.locating;
      button.disabled = true;
      navigator.geolocation.getCurrentPosition(
        (position) => {
          latitude.value = position.coords.latitude.toFixed(6);
          longitude.value = position.coords.longitude.toFixed(6);
          status.textContent = button.dataset.located;
          button.disabled = false;
        },
        () => {
          status.textContent = button.dataset.failed;
          button.disabled = false;
        },
        { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 },
      );
    });
  }

  const files = document.getElementById("files");
  if (files) {
    files.addEventListener("change", () => {
      const maxBytes = Number(files.dataset.maxBytes);
      const maxCount = Number(files.dataset.maxCount);
      let problem = "";
      if (files.files.length > maxCount) {
        problem = files.dataset.tooMany;
      } else {
        for (const file of files.files) {
          if (file.size > maxBytes) {
            problem = files.dataset.tooBig
              .replace("{name}", file.name)
              .replace("{size}", files.dataset.size);
            break;
          }
        }
      }
      // Shown by the browser on submit, which it then refuses.
      files.setCustomValidity(problem);
      if (problem) {
        files.reportValidity();
      }
    });
  }

  let sent = false;
  // A page brought back with the browser's Back button may be sent again on purpose.
  window.addEventListener("pageshow", () => {
    sent = false;
  });
  form.addEventListener("submit", (event) => {
    if (sent) {
      event.preventDefault();
      return;
    }
    sent = true;
    const submit = document.getElementById("register-submit");
    if (submit) {
      submit.setAttribute("aria-disabled", "true");
    }
  });
});
