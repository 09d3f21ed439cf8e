/* meldpunt web chat: the widget a town puts on its own site with one tag,
 *
 *   <script src="{base}/chat/widget.js" data-lang="nl" defer></script>
 *
 * One file, no dependencies, no build step: code, styles, icons and strings (nl, fr, en). It lives
 * in a shadow root so the town's CSS cannot reach it, and talks to meldpunt as described in
 * docs/channels/webchat-protocol.md (a WebSocket for the conversation, HTTP for images).
 */
(() => {
  "use strict";

  // Read at once: document.currentScript is only set while this file first runs.
  const script =
    document.currentScript ||
    [...document.querySelectorAll("script[src]")].find((s) =>
      /\/chat\/widget\.js([?#]|$)/.test(s.src),
    );
  if (!script || window.meldpuntChat) return; // not found, or the tag is on the page twice
  window.meldpuntChat = true;

  // {base}/chat/widget.js -> {base}/ (meldpunt may live under a path prefix).
  const BASE = new URL("../", script.src);
  const WS_URL = (() => {
    const url = new URL("chat/ws", BASE);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  })();
  const UPLOAD_URL = new URL("chat/upload", BASE).href;
  const TOKEN_KEY = "meldpunt-chat-visitor"; // fixed by the protocol
  const OUTBOX_KEY = "meldpunt-chat-outbox"; // messages not yet acknowledged, kept over reloads
  const OPEN_KEY = "meldpunt-chat-open"; // per tab: the panel stays open from page to page
  const PING_EVERY = 25000; // keeps proxies from closing an idle socket
  const PONG_WITHIN = 10000; // no answer by then: the connection is dead, reconnect

  const STRINGS = {
    nl: {
      launcher: "Chat met ons",
      unread: ["{n} nieuw bericht", "{n} nieuwe berichten"],
      title: "Chat met ons",
      close: "Chat sluiten",
      intro: "Stel hier uw vraag. Een medewerker van de gemeente antwoordt zo snel mogelijk.",
      log: "Gesprek",
      you: "U",
      staff: "Medewerker",
      system: "Bericht",
      message_label: "Uw bericht",
      placeholder: "Schrijf uw bericht…",
      keys_hint: "Enter verstuurt. Shift en Enter begint een nieuwe regel.",
      send: "Verzenden",
      attach: "Foto toevoegen",
      photo: "Foto: {name}",
      mb: "{n} MB",
      kb: "{n} kB",
      reference: "Uw referentie: {ref}",
      queue: "U bent nummer {n} in de wachtrij. Een medewerker helpt u zo snel mogelijk.",
      connecting: "Verbinden…",
      disconnected: "Verbinding verbroken, we proberen opnieuw…",
      pending: "Wordt verzonden…",
      sent: "Verzonden",
      retry: "Opnieuw proberen",
      choices: "Kies een antwoord",
      kind_label: "Waarover gaat het?",
      kind_none: "Maak een keuze (niet verplicht)",
      kinds: {
        report: "Melding (iets is stuk, vuil of gevaarlijk)",
        question: "Vraag",
        suggestion: "Suggestie of idee",
        complaint: "Klacht",
        compliment: "Compliment",
      },
      chars_left: "Nog {n} tekens",
      chars_over: "{n} tekens te veel",
      closed: "De chat is nu gesloten.",
      back_on: "We zijn er weer op {day} om {time}.",
      offline_intro: "Laat een bericht achter. We antwoorden per e-mail of telefoon.",
      email: "E-mailadres",
      phone: "Telefoonnummer",
      address_hint: "Vul minstens een e-mailadres of een telefoonnummer in.",
      offline_send: "Bericht versturen",
      offline_thanks: "Bedankt. We hebben uw bericht ontvangen. Uw referentie: {ref}.",
      contact_toggle: "E-mail of telefoon achterlaten",
      contact_intro: "Dan kunnen we ook antwoorden als u de chat verlaten hebt.",
      contact_save: "Bewaren",
      contact_saved: "Bewaard. Bent u weg als we antwoorden? Dan krijgt u het antwoord {how}.",
      contact_noted: "Bedankt. We hebben uw gegevens genoteerd.",
      by_email: "per e-mail",
      by_phone: "per telefoon",
      by_both: "per e-mail of telefoon",
      errors: {
        too_long: "Uw bericht is te lang. Maak het korter.",
        empty: "Schrijf eerst een bericht.",
        rate_limited: "U stuurt te veel berichten kort na elkaar. Wacht even en probeer opnieuw.",
        invalid_email: "Dit e-mailadres klopt niet.",
        invalid_phone: "Dit telefoonnummer klopt niet.",
        need_address: "Vul een e-mailadres of een telefoonnummer in.",
        unavailable: "Dit lukt nu even niet. We proberen het straks opnieuw.",
        bad_frame: "Er ging iets mis. Probeer opnieuw.",
        upload_type: "Dit soort bestand kan niet. Kies een foto.",
        upload_size: "Deze foto is te groot. Het maximum is {size}.",
        upload_failed: "De foto is niet verzonden. Probeer opnieuw.",
        offline_text: "Schrijf een bericht.",
      },
    },
    fr: {
      launcher: "Chattez avec nous",
      unread: ["{n} nouveau message", "{n} nouveaux messages"],
      title: "Chattez avec nous",
      close: "Fermer le chat",
      intro: "Posez votre question ici. Un collaborateur de la commune répond dès que possible.",
      log: "Conversation",
      you: "Vous",
      staff: "Collaborateur",
      system: "Message",
      message_label: "Votre message",
      placeholder: "Écrivez votre message…",
      keys_hint: "Entrée envoie. Maj et Entrée commence une nouvelle ligne.",
      send: "Envoyer",
      attach: "Ajouter une photo",
      photo: "Photo : {name}",
      mb: "{n} Mo",
      kb: "{n} ko",
      reference: "Votre référence : {ref}",
      queue:
        "Vous êtes numéro {n} dans la file d'attente. " +
        "Un collaborateur vous aide dès que possible.",
      connecting: "Connexion…",
      disconnected: "Connexion perdue, nous réessayons…",
      pending: "Envoi en cours…",
      sent: "Envoyé",
      retry: "Réessayer",
      choices: "Choisissez une réponse",
      kind_label: "De quoi s'agit-il ?",
      kind_none: "Faites un choix (facultatif)",
      kinds: {
        report: "Signalement (cassé, sale ou dangereux)",
        question: "Question",
        suggestion: "Suggestion ou idée",
        complaint: "Plainte",
        compliment: "Compliment",
      },
      chars_left: "Encore {n} caractères",
      chars_over: "{n} caractères de trop",
      closed: "Le chat est fermé pour le moment.",
      back_on: "Nous serons de retour le {day} à {time}.",
      offline_intro: "Laissez un message. Nous répondons par e-mail ou par téléphone.",
      email: "Adresse e-mail",
      phone: "Numéro de téléphone",
      address_hint: "Indiquez au moins une adresse e-mail ou un numéro de téléphone.",
      offline_send: "Envoyer le message",
      offline_thanks: "Merci. Nous avons bien reçu votre message. Votre référence : {ref}.",
      contact_toggle: "Laisser un e-mail ou un téléphone",
      contact_intro: "Ainsi, nous pouvons vous répondre même si vous avez quitté le chat.",
      contact_save: "Enregistrer",
      contact_saved:
        "Enregistré. Vous êtes parti quand nous répondons ? Vous recevrez la réponse {how}.",
      contact_noted: "Merci. Nous avons noté vos coordonnées.",
      by_email: "par e-mail",
      by_phone: "par téléphone",
      by_both: "par e-mail ou par téléphone",
      errors: {
        too_long: "Votre message est trop long. Raccourcissez-le.",
        empty: "Écrivez d'abord un message.",
        rate_limited: "Vous envoyez trop de messages à la suite. Attendez un peu et réessayez.",
        invalid_email: "Cette adresse e-mail n'est pas correcte.",
        invalid_phone: "Ce numéro de téléphone n'est pas correct.",
        need_address: "Indiquez une adresse e-mail ou un numéro de téléphone.",
        unavailable: "Cela ne fonctionne pas pour le moment. Nous réessayons bientôt.",
        bad_frame: "Un problème est survenu. Réessayez.",
        upload_type: "Ce type de fichier n'est pas accepté. Choisissez une photo.",
        upload_size: "Cette photo est trop grande. Le maximum est de {size}.",
        upload_failed: "La photo n'a pas été envoyée. Réessayez.",
        offline_text: "Écrivez un message.",
      },
    },
    en: {
      launcher: "Chat with us",
      unread: ["{n} new message", "{n} new messages"],
      title: "Chat with us",
      close: "Close chat",
      intro: "Ask your question here. A member of the town's staff answers as soon as possible.",
      log: "Conversation",
      you: "You",
      staff: "Staff",
      system: "Notice",
      message_label: "Your message",
      placeholder: "Write your message…",
      keys_hint: "Enter sends. Shift and Enter starts a new line.",
      send: "Send",
      attach: "Add a photo",
      photo: "Photo: {name}",
      mb: "{n} MB",
      kb: "{n} kB",
      reference: "Your reference: {ref}",
      queue:
        "You are number {n} in the queue. A member of staff will help you as soon as possible.",
      connecting: "Connecting…",
      disconnected: "Connection lost, trying again…",
      pending: "Sending…",
      sent: "Sent",
      retry: "Try again",
      choices: "Choose an answer",
      kind_label: "What is it about?",
      kind_none: "Choose (optional)",
      kinds: {
        report: "Report (something broken, dirty or dangerous)",
        question: "Question",
        suggestion: "Suggestion or idea",
        complaint: "Complaint",
        compliment: "Compliment",
      },
      chars_left: "{n} characters left",
      chars_over: "{n} characters too many",
      closed: "The chat is closed now.",
      back_on: "We are back on {day} at {time}.",
      offline_intro: "Leave a message. We answer by e-mail or phone.",
      email: "E-mail address",
      phone: "Phone number",
      address_hint: "Fill in an e-mail address or a phone number, or both.",
      offline_send: "Send message",
      offline_thanks: "Thank you. We have received your message. Your reference: {ref}.",
      contact_toggle: "Leave your e-mail or phone number",
      contact_intro: "Then we can answer you when you have left the chat.",
      contact_save: "Save",
      contact_saved: "Saved. If you have left when we answer, you get the answer {how}.",
      contact_noted: "Thank you. We have noted your details.",
      by_email: "by e-mail",
      by_phone: "by phone",
      by_both: "by e-mail or phone",
      errors: {
        too_long: "Your message is too long. Please shorten it.",
        empty: "Write a message first.",
        rate_limited: "You are sending too many messages in a row. Wait a moment and try again.",
        invalid_email: "This e-mail address is not correct.",
        invalid_phone: "This phone number is not correct.",
        need_address: "Fill in an e-mail address or a phone number.",
        unavailable: "This does not work right now. We will try again shortly.",
        bad_frame: "Something went wrong. Please try again.",
        upload_type: "This kind of file is not accepted. Choose a photo.",
        upload_size: "This photo is too large. The maximum is {size}.",
        upload_failed: "The photo was not sent. Please try again.",
        offline_text: "Write a message.",
      },
    },
  };
  const LOCALES = { nl: "nl-BE", fr: "fr-BE", en: "en-GB" };
  // The kinds of message the protocol knows, in the order they are offered.
  const KINDS = ["report", "question", "suggestion", "complaint", "compliment"];

  // data-lang first, then the browser's languages; Dutch when none of them is ours.
  const LANG =
    [script.dataset.lang, ...(navigator.languages || []), navigator.language]
      .map((tag) => String(tag || "").slice(0, 2).toLowerCase())
      .find((code) => code in STRINGS) || "nl";
  const S = STRINGS[LANG];
  const t = (text, vars = {}) => text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  const errorText = (code) => S.errors[code] || S.errors.bad_frame;

  // Storage can be switched off or full; the chat then works for this page view only.
  const store = {
    get(area, key) {
      try {
        return window[area].getItem(key);
      } catch {
        return null;
      }
    },
    set(area, key, value) {
      try {
        if (value === null) window[area].removeItem(key);
        else window[area].setItem(key, value);
      } catch {
        /* not kept, nothing more to do */
      }
    },
  };

  // crypto.randomUUID needs a secure context; a town's site may still be plain http.
  const newClientId = () => {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
      .join("-");
  };

  const ICONS = {
    chat: '<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm2 5v2h12V8H6zm0 4v2h8v-2H6z"/></svg>',
    close: '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false"><path fill="currentColor" d="M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z"/></svg>',
    clip: '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false"><path fill="currentColor" d="M16.5 6.5v10.6a4.5 4.5 0 0 1-9 0V5.8a3 3 0 0 1 6 0v10.3a1.5 1.5 0 0 1-3 0V6.5H9v9.6a3 3 0 0 0 6 0V5.8a4.5 4.5 0 0 0-9 0v11.3a6 6 0 0 0 12 0V6.5z"/></svg>',
    send: '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false"><path fill="currentColor" d="M3 20.5 21.5 12 3 3.5v6.6L16 12 3 13.9z"/></svg>',
  };

  const CSS = `
    :host { all: initial; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    .root { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
      color: #1a1a1a; }
    .sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0;
      overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
    button, input, select, textarea { font: inherit; color: inherit; }
    input, select, textarea { font-size: 16px; } /* smaller makes iOS zoom in on focus */
    button { cursor: pointer; }
    .launcher { position: fixed; right: 16px; bottom: 16px; z-index: 2147483000;
      display: inline-flex; align-items: center; gap: 8px; min-height: 48px; padding: 10px 18px;
      border: 2px solid #fff; border-radius: 999px; background: #0b5cad; color: #fff;
      font-weight: 600; box-shadow: 0 2px 10px rgba(0,0,0,.3); }
    .launcher:hover { background: #084a8c; }
    .badge { min-width: 22px; padding: 0 6px; border-radius: 11px; background: #fff;
      color: #0b5cad; font-size: 13px; line-height: 22px; text-align: center; }
    .panel { position: fixed; right: 16px; bottom: 80px; z-index: 2147483001;
      width: 380px; height: min(620px, calc(100vh - 100px)); display: flex;
      flex-direction: column; background: #fff; border: 1px solid #767676; border-radius: 12px;
      box-shadow: 0 6px 28px rgba(0,0,0,.3); overflow: hidden; }
    header { display: flex; align-items: center; gap: 8px; padding: 10px 10px 10px 16px;
      background: #0b5cad; color: #fff; }
    h2 { flex: 1; margin: 0; font-size: 17px; font-weight: 700; }
    .icon { display: inline-flex; align-items: center; justify-content: center; width: 44px;
      height: 44px; padding: 0; border: 0; border-radius: 8px; background: transparent; }
    header .icon { color: #fff; }
    header .icon:hover { background: rgba(255,255,255,.18); }
    .info { padding: 0 16px; background: #eef3f9; border-bottom: 1px solid #c9d6e5; }
    .info p { margin: 6px 0; font-size: 14px; }
    .info:not(:has(p:not([hidden]))) { border: 0; }
    .status { font-weight: 600; }
    .scroll { flex: 1; overflow-y: auto; padding: 12px 16px; }
    .intro { margin: 0 0 12px; color: #444; }
    .msg { display: flex; flex-direction: column; align-items: flex-start; margin: 0 0 10px; }
    .msg.visitor { align-items: flex-end; }
    .msg.system { align-items: center; text-align: center; }
    .bubble { max-width: 85%; padding: 8px 12px; border-radius: 14px; background: #f0f2f5;
      white-space: pre-wrap; overflow-wrap: anywhere; }
    .visitor .bubble { background: #0b5cad; color: #fff; }
    .visitor .bubble a { color: #fff; }
    .system .bubble { background: transparent; color: #444; font-size: 14px; }
    .bubble a { color: #0b4f96; }
    .bubble img { display: block; max-width: 100%; max-height: 240px; margin: 4px 0;
      border-radius: 8px; background: #fff; }
    .meta { margin-top: 2px; font-size: 12.5px; color: #595959; }
    .error { margin: 4px 0 0; color: #b3261e; font-size: 14px; font-weight: 600; }
    .error:empty { margin: 0; }
    .msg .error { max-width: 85%; text-align: right; }
    .link-button { padding: 0; border: 0; background: none; color: #0b4f96;
      text-decoration: underline; }
    .choices { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
    .choice { min-width: 44px; min-height: 44px; padding: 6px 12px; border: 2px solid #0b5cad;
      border-radius: 999px; background: #fff; color: #0b4f96; font-weight: 600; }
    .choice:hover { background: #eef3f9; }
    .notice { margin: 8px 0 12px; padding: 10px 12px; border-left: 4px solid #0b5cad;
      background: #eef3f9; }
    .notice p { margin: 0 0 4px; }
    form.stack label { display: block; margin: 10px 0 4px; font-weight: 600; font-size: 14px; }
    input[type=email], input[type=tel], textarea, select { width: 100%; padding: 8px 10px;
      border: 1px solid #767676; border-radius: 8px; background: #fff; }
    select { min-height: 44px; }
    .composer .kind { margin: 0 0 8px; }
    .kind label { display: block; margin: 0 0 4px; font-weight: 600; font-size: 14px; }
    input[aria-invalid=true], textarea[aria-invalid=true] { border: 2px solid #b3261e; }
    .hint { margin: 4px 0 0; font-size: 13.5px; color: #595959; }
    .primary { margin-top: 12px; min-height: 44px; padding: 8px 16px; border: 0;
      border-radius: 8px; background: #0b5cad; color: #fff; font-weight: 600; }
    .primary:hover { background: #084a8c; }
    .thanks { margin: 8px 0; padding: 10px 12px; background: #e7f4ea;
      border-left: 4px solid #1e7a34; }
    details.contact { margin-top: 12px; border-top: 1px solid #d6d6d6; }
    details.contact summary { padding: 8px 0; color: #0b4f96; font-size: 14px; cursor: pointer; }
    details.contact form { padding-bottom: 10px; }
    details.contact p { margin: 0; font-size: 14px; }
    .composer { border-top: 1px solid #d6d6d6; padding: 8px 10px 10px; }
    .row { display: flex; align-items: flex-end; gap: 6px; }
    .composer textarea { flex: 1; min-height: 44px; max-height: 140px; resize: none; }
    .composer textarea::placeholder { color: #595959; }
    .composer .icon { color: #0b5cad; }
    .composer .icon:hover { background: #eef3f9; }
    .composer .icon:disabled { color: #8a8a8a; cursor: not-allowed; }
    .composer .error, .counter { margin: 4px 4px 0; }
    .counter { font-size: 13px; color: #595959; }
    .counter.over { color: #b3261e; font-weight: 600; }
    /* A white and a dark ring: visible on any page colour and on our own blue. Last, and
       specific enough to win over the shadows above. */
    .root :focus-visible { outline: 3px solid transparent;
      box-shadow: 0 0 0 3px #fff, 0 0 0 6px #1a1a1a; }
    .root .log:focus-visible { box-shadow: inset 0 0 0 3px #1a1a1a; }
    @media (max-width: 480px), (max-height: 520px) {
      .panel { inset: 0; width: 100%; height: 100%; border: 0; border-radius: 0; }
    }
    @media (forced-colors: active) {
      .launcher, .panel, .bubble { border: 2px solid CanvasText; }
    }
  `;

  // A tiny element builder: h("p", {class: "x", hidden: true}, "text", child...).
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "html") node.innerHTML = value; // only ever our own icon markup
      else node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  // Shows text in a note, or hides the note when there is none (emptied too: aria-describedby
  // would still read a hidden note out). Alerts stay in the page, only emptied: a live region
  // that appears together with its text is not read out by every screen reader.
  function say(el, text) {
    el.textContent = text || "";
    if (el.getAttribute("role") !== "alert") el.hidden = !text;
  }

  // Text with its web addresses as links; everything else stays plain text (never HTML).
  function linkified(text) {
    const part = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(/\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]]/g)) {
      part.append(text.slice(last, m.index));
      part.append(h("a", { href: m[0], target: "_blank", rel: "noopener noreferrer" }, m[0]));
      last = m.index + m[0].length;
    }
    part.append(text.slice(last));
    return part;
  }

  // Files of the conversation are only served with the visitor's token (never sent elsewhere).
  // A path, even "/chat/files/1", is read from the base, so meldpunt may sit under a prefix.
  function fileUrl(url) {
    if (/^(blob|data):/.test(url)) return url;
    const full = new URL(/^\/(?!\/)/.test(url) ? url.slice(1) : url, BASE);
    if (full.origin === BASE.origin && state.token && !full.searchParams.has("visitor")) {
      full.searchParams.set("visitor", state.token);
    }
    return full.href;
  }

  const timeFormat = new Intl.DateTimeFormat(LOCALES[LANG], { hour: "2-digit", minute: "2-digit" });
  const clock = (iso) => {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? "" : timeFormat.format(at);
  };

  // ---- state ----------------------------------------------------------------------------------

  const state = {
    token: store.get("localStorage", TOKEN_KEY),
    ws: null,
    welcomed: false,
    attempt: 0, // reconnections since the last welcome
    retryTimer: 0,
    pingTimer: 0,
    pongTimer: 0,
    limits: {
      max_chars: 2000,
      max_upload_bytes: 10 * 1024 * 1024,
      upload_types: ["image/jpeg", "image/png", "image/webp", "image/gif"],
    },
    open: true, // the chat is staffed (office hours)
    nextOpen: null,
    timezone: "Europe/Brussels",
    // Frames the server has not acknowledged, oldest first; re-sent with the same client_id.
    outbox: (() => {
      try {
        const kept = JSON.parse(store.get("localStorage", OUTBOX_KEY) || "[]");
        return Array.isArray(kept) ? kept.filter((f) => f && f.client_id) : [];
      } catch {
        return [];
      }
    })(),
    shown: new Map(), // line id -> element: staff messages come once even when sent twice
    byClient: new Map(), // client_id -> element of the visitor's own message
    unread: 0,
    contactSending: false,
    choices: null, // the answer buttons on show, if any (one set at a time)
    // The open ticket's reference: null when there is none, undefined until the server said
    // (a visitor with a token may have one). The kind can only be chosen while it is null.
    reference: undefined,
    kindFor: null, // client_id of the message that took the kind choice (it is asked once)
  };
  if (!state.token) state.reference = null; // a new visitor has no ticket yet
  const saveOutbox = () => {
    const kept = state.outbox.length ? JSON.stringify(state.outbox) : null;
    store.set("localStorage", OUTBOX_KEY, kept);
  };

  // ---- the DOM --------------------------------------------------------------------------------

  const ui = {};
  function build() {
    // A custom element name: no rule of the town's CSS for div or section matches the host.
    const host = h("meldpunt-chat", {});
    const shadow = host.attachShadow({ mode: "open" });
    const fileTypes = () => state.limits.upload_types.join(",");

    ui.badge = h("span", { class: "badge", hidden: true });
    ui.launcher = h(
      "button",
      {
        type: "button",
        class: "launcher",
        "aria-expanded": "false",
        "aria-controls": "meldpunt-chat-panel",
        onclick: () => (ui.panel.hidden ? openPanel(true) : closePanel()),
      },
      h("span", { html: ICONS.chat, style: "display:inline-flex" }),
      h("span", {}, S.launcher),
      ui.badge,
    );

    ui.reference = h("p", { hidden: true });
    ui.queue = h("p", { hidden: true });
    ui.status = h("p", { class: "status", hidden: true });
    ui.log = h("div", {
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-label": S.log,
      tabindex: "0",
    });

    // Before the first message: what kind of message it is, optional. Out of office hours the
    // offline form has its own copy; both show the same choice.
    const kindChoice = (id) => {
      const select = h(
        "select",
        {
          id,
          onchange: () => {
            for (const other of [ui.kind, ui.offlineKind]) other.value = select.value;
          },
        },
        h("option", { value: "" }, S.kind_none),
        ...KINDS.map((kind) => h("option", { value: kind }, S.kinds[kind])),
      );
      const label = h("label", { for: id }, S.kind_label);
      return [h("div", { class: "kind", hidden: true }, label, select), select];
    };
    [ui.kindField, ui.kind] = kindChoice("mc-kind");
    [ui.offlineKindField, ui.offlineKind] = kindChoice("mc-offline-kind");

    // Out of office hours: when we are back, and a message with an address in one step.
    ui.closedText = h("p", {});
    ui.offlineText = h("textarea", { id: "mc-offline-text", rows: "4", required: true });
    ui.offlineEmail = h("input", { id: "mc-offline-email", type: "email", autocomplete: "email" });
    ui.offlinePhone = h("input", { id: "mc-offline-phone", type: "tel", autocomplete: "tel" });
    ui.offlineError = h("p", { class: "error", id: "mc-offline-error", role: "alert" });
    ui.offlineForm = h(
      "form",
      { class: "stack", novalidate: true, onsubmit: submitOffline },
      h("p", {}, S.offline_intro),
      ui.offlineKindField,
      h("label", { for: "mc-offline-text" }, S.message_label),
      ui.offlineText,
      h("label", { for: "mc-offline-email" }, S.email),
      ui.offlineEmail,
      h("label", { for: "mc-offline-phone" }, S.phone),
      ui.offlinePhone,
      h("p", { class: "hint", id: "mc-offline-hint" }, S.address_hint),
      ui.offlineError,
      h("button", { type: "submit", class: "primary" }, S.offline_send),
    );
    for (const field of [ui.offlineEmail, ui.offlinePhone]) {
      field.setAttribute("aria-describedby", "mc-offline-hint mc-offline-error");
    }
    ui.offlineText.setAttribute("aria-describedby", "mc-offline-error");
    ui.thanks = h("p", { class: "thanks", hidden: true });
    ui.offline = h(
      "section",
      { class: "offline", hidden: true, "aria-labelledby": "mc-closed" },
      h("div", { class: "notice", id: "mc-closed" }, ui.closedText),
      ui.offlineForm,
    );

    // While open: leave an address for an answer after the visitor has gone.
    ui.contactEmail = h("input", { id: "mc-contact-email", type: "email", autocomplete: "email" });
    ui.contactPhone = h("input", { id: "mc-contact-phone", type: "tel", autocomplete: "tel" });
    ui.contactError = h("p", { class: "error", id: "mc-contact-error", role: "alert" });
    ui.contactSaved = h("p", { role: "status" });
    ui.contactForm = h(
      "form",
      { class: "stack", novalidate: true, onsubmit: submitContact },
      h("p", {}, S.contact_intro),
      h("label", { for: "mc-contact-email" }, S.email),
      ui.contactEmail,
      h("label", { for: "mc-contact-phone" }, S.phone),
      ui.contactPhone,
      ui.contactError,
      h("button", { type: "submit", class: "primary" }, S.contact_save),
    );
    for (const field of [ui.contactEmail, ui.contactPhone]) {
      field.setAttribute("aria-describedby", "mc-contact-error");
    }
    ui.contact = h(
      "details",
      { class: "contact" },
      h("summary", {}, S.contact_toggle),
      ui.contactForm,
      ui.contactSaved,
    );

    ui.file = h("input", {
      type: "file",
      accept: fileTypes(),
      hidden: true,
      tabindex: "-1",
      onchange: () => {
        const [file] = ui.file.files;
        ui.file.value = "";
        if (file) upload(file);
      },
    });
    ui.attach = h("button", {
      type: "button",
      class: "icon",
      "aria-label": S.attach,
      title: S.attach,
      disabled: true,
      html: ICONS.clip,
      onclick: () => {
        ui.file.accept = fileTypes();
        ui.file.click();
      },
    });
    ui.text = h("textarea", {
      id: "mc-text",
      rows: "1",
      placeholder: S.placeholder,
      "aria-describedby": "mc-keys mc-counter mc-composer-error",
      onkeydown: (event) => {
        // Enter sends; Shift+Enter (and Enter while an input method composes) is a new line.
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          sendTyped();
        }
      },
      oninput: () => {
        fitText();
        showCounter();
        say(ui.composerError, null);
      },
    });
    ui.counter = h("p", { class: "counter", id: "mc-counter", hidden: true });
    ui.composerError = h("p", { class: "error", id: "mc-composer-error", role: "alert" });
    ui.composer = h(
      "form",
      {
        class: "composer",
        onsubmit: (event) => {
          event.preventDefault();
          sendTyped();
        },
      },
      ui.kindField,
      h("label", { for: "mc-text", class: "sr-only" }, S.message_label),
      h("p", { id: "mc-keys", class: "sr-only" }, S.keys_hint),
      h(
        "div",
        { class: "row" },
        ui.attach,
        ui.file,
        ui.text,
        h("button", {
          type: "submit",
          class: "icon",
          "aria-label": S.send,
          title: S.send,
          html: ICONS.send,
        }),
      ),
      ui.counter,
      ui.composerError,
    );

    ui.panel = h(
      "div",
      {
        id: "meldpunt-chat-panel",
        class: "panel",
        role: "dialog",
        "aria-modal": "false",
        "aria-labelledby": "mc-title",
        hidden: true,
        onkeydown: (event) => {
          if (event.key === "Escape") {
            event.preventDefault();
            closePanel();
          }
        },
      },
      h(
        "header",
        {},
        h("h2", { id: "mc-title" }, S.title),
        h("button", {
          type: "button",
          class: "icon",
          "aria-label": S.close,
          title: S.close,
          html: ICONS.close,
          onclick: closePanel,
        }),
      ),
      // Always in the page, so a screen reader hears the queue place and the connection change.
      h("div", { class: "info", role: "status" }, ui.status, ui.reference, ui.queue),
      h(
        "div",
        { class: "scroll" },
        h("p", { class: "intro" }, S.intro),
        ui.log,
        h("div", { role: "status" }, ui.thanks),
        ui.offline,
        ui.contact,
      ),
      ui.composer,
    );

    shadow.append(
      h("style", {}, CSS),
      h("div", { class: "root", lang: LANG }, ui.launcher, ui.panel),
    );
    ui.scroll = ui.panel.querySelector(".scroll");
    ui.shadow = shadow;
    document.body.append(host);
  }

  function fitText() {
    ui.text.style.height = "auto";
    ui.text.style.height = `${Math.min(ui.text.scrollHeight + 2, 140)}px`;
  }

  function showCounter() {
    const max = state.limits.max_chars;
    const left = max - ui.text.value.length;
    // Only near the limit: a counter that is always there is noise.
    const near = left <= Math.max(50, max * 0.1);
    ui.counter.classList.toggle("over", left < 0);
    const text = left < 0 ? t(S.chars_over, { n: -left }) : t(S.chars_left, { n: left });
    say(ui.counter, near ? text : null);
  }

  function scrollDown() {
    ui.scroll.scrollTop = ui.scroll.scrollHeight;
  }

  // The latest message; out of hours, when we are back matters more than the conversation.
  function scrollToNow() {
    if (state.open) scrollDown();
    else ui.scroll.scrollTop = ui.offline.offsetTop - ui.scroll.offsetTop - 12;
  }

  function setUnread(count) {
    state.unread = count;
    ui.badge.hidden = count === 0;
    ui.badge.textContent = "";
    if (count) {
      ui.badge.append(
        h("span", { "aria-hidden": "true" }, String(count)),
        h("span", { class: "sr-only" }, t(S.unread[count === 1 ? 0 : 1], { n: count })),
      );
    }
  }

  function openPanel(focus) {
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    store.set("sessionStorage", OPEN_KEY, "1");
    setUnread(0);
    connect();
    scrollToNow();
    if (focus) (state.open ? ui.text : ui.offlineText).focus();
  }

  function closePanel() {
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    store.set("sessionStorage", OPEN_KEY, null);
    ui.launcher.focus();
  }

  // ---- the conversation -----------------------------------------------------------------------

  function lineElement(line, pending) {
    const who = { visitor: S.you, staff: S.staff }[line.from] || S.system;
    const bubble = h("div", { class: "bubble" }, h("span", { class: "sr-only" }, `${who}: `));
    if (line.text) bubble.append(linkified(line.text));
    const el = h("div", { class: `msg ${line.from}` }, bubble, h("div", { class: "meta" }));
    showAttachments(el, line.attachments || []);
    if (pending) setLineState(el, "pending");
    else setLineState(el, "sent", line.at);
    return el;
  }

  function showAttachments(el, attachments) {
    const bubble = el.querySelector(".bubble");
    bubble.querySelectorAll(".file").forEach((node) => node.remove());
    for (const file of attachments) {
      const url = fileUrl(file.url);
      const name = file.name || "";
      const inner = String(file.content_type || "").startsWith("image/")
        ? h("img", { src: url, alt: t(S.photo, { name }) })
        : name;
      bubble.append(
        h(
          "a",
          { class: "file", href: url, target: "_blank", rel: "noopener noreferrer" },
          inner,
        ),
      );
    }
  }

  // pending: on its way; sent: the server has it; failed: it did not go (with why).
  function setLineState(el, kind, at, error, retry) {
    el.dataset.state = kind;
    el.classList.toggle("pending", kind === "pending");
    const meta = el.querySelector(".meta");
    meta.textContent = "";
    if (kind === "pending") meta.textContent = S.pending;
    else if (kind === "sent") {
      const time = at ? clock(at) : "";
      meta.textContent = el.classList.contains("visitor")
        ? [S.sent, time].filter(Boolean).join(" · ")
        : time;
    }
    el.querySelectorAll(".error").forEach((node) => node.remove());
    if (error) {
      const note = h("p", { class: "error", role: "alert" }, error);
      if (retry) {
        const again = { type: "button", class: "link-button", onclick: retry };
        note.append(" ", h("button", again, S.retry));
      }
      el.append(note);
    }
  }

  // New lines go above the visitor's own pending ones, which stay at the bottom until sent.
  function appendLine(el, pending) {
    const firstPending = pending ? null : ui.log.querySelector(".msg.pending");
    ui.log.insertBefore(el, firstPending);
  }

  function showLine(line) {
    if (line.id && state.shown.has(line.id)) return false;
    const mine = line.client_id && state.byClient.get(line.client_id);
    if (mine) {
      settle(line.client_id, line);
      if (line.id) state.shown.set(line.id, mine);
      // A photo still shown from the visitor's own disk: now from meldpunt.
      if (line.attachments?.length && mine.querySelector('img[src^="blob:"]')) {
        showAttachments(mine, line.attachments);
      }
      return false;
    }
    const el = lineElement(line, false);
    if (line.id) state.shown.set(line.id, el);
    if (line.client_id) state.byClient.set(line.client_id, el);
    appendLine(el, false);
    return true;
  }

  // The server has this message: out of the outbox, marked as sent.
  function settle(clientId, ack) {
    const index = state.outbox.findIndex((f) => f.client_id === clientId);
    const frame = index >= 0 ? state.outbox.splice(index, 1)[0] : null;
    saveOutbox();
    const el = state.byClient.get(clientId);
    if (el) {
      if (ack.id) state.shown.set(ack.id, el);
      setLineState(el, "sent", ack.at);
    }
    if (ack.reference) showReference(ack.reference);
    if (frame?.type === "offline_message") {
      say(ui.thanks, t(S.offline_thanks, { ref: ack.reference || "" }));
      ui.offlineForm.hidden = true;
    }
  }

  function queueFrame(frame) {
    clearChoices();
    state.outbox.push(frame);
    saveOutbox();
    const text = frame.text || "";
    const el = lineElement({ from: "visitor", text, attachments: [] }, true);
    state.byClient.set(frame.client_id, el);
    appendLine(el, true);
    scrollDown();
    sendFrame(frame);
  }

  function sendTyped() {
    const text = ui.text.value.trim();
    say(ui.composerError, null);
    if (!text) return;
    if (text.length > state.limits.max_chars) {
      say(ui.composerError, errorText("too_long"));
      return;
    }
    ui.text.value = "";
    fitText();
    showCounter();
    queueFrame(withKind({ type: "message", client_id: newClientId(), text }));
  }

  // ---- the kind of message --------------------------------------------------------------------

  // Asked only before the first message of a conversation: a message that continues an open
  // ticket cannot change what the ticket is (the server ignores its kind).
  function kindOffered() {
    return state.reference === null && !state.kindFor && !state.outbox.length;
  }

  function showKind() {
    const offered = kindOffered();
    ui.kindField.hidden = !offered;
    ui.offlineKindField.hidden = !offered;
  }

  // The frame with the visitor's choice, if any; the choice goes with this one message only.
  function withKind(frame) {
    const kind = takeKind(frame.client_id);
    return kind ? { ...frame, kind } : frame;
  }

  function takeKind(clientId) {
    if (!kindOffered()) return null;
    const kind = KINDS.includes(ui.kind.value) ? ui.kind.value : null;
    // The choice is about to go: keep keyboard focus out of a hidden field.
    if ([ui.kind, ui.offlineKind].includes(ui.shadow.activeElement)) {
      (state.open ? ui.text : ui.offlineText).focus();
    }
    state.kindFor = clientId;
    showKind();
    return kind;
  }

  // The message that took the choice was refused: offer it again, as it was.
  function giveKindBack(clientId, kind) {
    if (!clientId || state.kindFor !== clientId) return;
    state.kindFor = null;
    for (const select of [ui.kind, ui.offlineKind]) select.value = kind || "";
    showKind();
  }

  // ---- answer buttons -------------------------------------------------------------------------

  // Answers offered under a staff or system line (a survey's "1 😞" to "5 😀"). A click sends
  // the label as the visitor's own message, exactly as if typed; the buttons go once the
  // visitor sends anything, as the line's question is then answered.
  function offerChoices(line) {
    const labels = (Array.isArray(line.choices) ? line.choices : []).filter(
      (c) => typeof c === "string" && c.trim(),
    );
    const el = line.from !== "visitor" ? state.shown.get(line.id) : null;
    // Under the newest line only: anything after it (the visitor's own words) answered it.
    if (!el || el.nextElementSibling || !labels.length) return;
    if (state.choices?.parentNode === el) return; // the same line pushed twice
    clearChoices();
    const group = h("div", { class: "choices", role: "group", "aria-label": S.choices });
    for (const label of labels) {
      const attrs = { type: "button", class: "choice", onclick: () => choose(label) };
      group.append(h("button", attrs, label));
    }
    el.append(group);
    state.choices = group;
  }

  function clearChoices() {
    if (state.choices) state.choices.remove();
    state.choices = null;
  }

  // Buttons belong under the newest line: once anything follows it, its question is past.
  function dropStaleChoices() {
    if (state.choices?.parentNode?.nextElementSibling) clearChoices();
  }

  function choose(label) {
    // The pressed button is about to go: keep keyboard focus where the conversation goes on.
    const focused = state.choices?.contains(ui.shadow.activeElement);
    queueFrame({ type: "message", client_id: newClientId(), text: label });
    if (focused) (ui.composer.hidden ? ui.log : ui.text).focus();
  }

  function resend(clientId) {
    const el = state.byClient.get(clientId);
    const frame = el?._frame;
    if (!frame) return;
    delete el._frame;
    state.outbox.push(frame);
    saveOutbox();
    setLineState(el, "pending");
    sendFrame(frame);
  }

  // ---- forms ----------------------------------------------------------------------------------

  // The server validates again; this catches typos before anything is sent.
  const looksLikeEmail = (v) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v);
  const looksLikePhone = (v) =>
    /^\+?[\d\s().\/-]{8,20}$/.test(v) && v.replace(/\D/g, "").length >= 8;

  function checkAddress(emailField, phoneField, errorEl) {
    const email = emailField.value.trim();
    const phone = phoneField.value.trim();
    let problem = null;
    let field = null;
    if (!email && !phone) [problem, field] = ["need_address", emailField];
    else if (email && !looksLikeEmail(email)) [problem, field] = ["invalid_email", emailField];
    else if (phone && !looksLikePhone(phone)) [problem, field] = ["invalid_phone", phoneField];
    showFieldError(errorEl, problem, field, [emailField, phoneField]);
    return problem ? null : { email: email || null, phone: phone || null };
  }

  function showFieldError(errorEl, code, field, fields) {
    for (const f of fields) f.removeAttribute("aria-invalid");
    say(errorEl, code ? errorText(code) : null);
    if (code && field) {
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
  }

  function submitOffline(event) {
    event.preventDefault();
    const text = ui.offlineText.value.trim();
    if (!text) {
      const fields = [ui.offlineText, ui.offlineEmail, ui.offlinePhone];
      showFieldError(ui.offlineError, "offline_text", ui.offlineText, fields);
      return;
    }
    ui.offlineText.removeAttribute("aria-invalid");
    const address = checkAddress(ui.offlineEmail, ui.offlinePhone, ui.offlineError);
    if (!address) return;
    ui.offlineText.value = "";
    queueFrame(withKind({ type: "offline_message", client_id: newClientId(), text, ...address }));
  }

  function submitContact(event) {
    event.preventDefault();
    const address = checkAddress(ui.contactEmail, ui.contactPhone, ui.contactError);
    if (!address) return;
    state.contactSending = true;
    ui.contactSaved.textContent = "";
    if (!sendFrame({ type: "contact", ...address })) {
      state.contactSending = false;
      showFieldError(ui.contactError, "unavailable", null, []);
    }
  }

  // What meldpunt can answer by now; both false (the address belongs to someone else's
  // contact) still means it was noted, and the visitor who just saved is told so.
  function showContactSaved(frame) {
    const how = frame.email && frame.phone ? S.by_both : frame.email ? S.by_email : S.by_phone;
    if (frame.email || frame.phone) ui.contactSaved.textContent = t(S.contact_saved, { how });
    else if (state.contactSending) ui.contactSaved.textContent = S.contact_noted;
    else return;
    state.contactSending = false;
    ui.contactForm.hidden = true;
  }

  // ---- images ---------------------------------------------------------------------------------

  function tooLarge() {
    const max = state.limits.max_upload_bytes;
    const number = (n) => n.toLocaleString(LOCALES[LANG], { maximumFractionDigits: 1 });
    const size =
      max >= 1048576 ? t(S.mb, { n: number(max / 1048576) }) : t(S.kb, { n: number(max / 1024) });
    return t(errorText("upload_size"), { size });
  }

  async function upload(file) {
    say(ui.composerError, null);
    const problem = !state.limits.upload_types.includes(file.type)
      ? errorText("upload_type")
      : file.size > state.limits.max_upload_bytes
        ? tooLarge()
        : null;
    if (problem) {
      say(ui.composerError, problem);
      return;
    }
    clearChoices();
    const clientId = newClientId();
    const kind = takeKind(clientId);
    const preview = URL.createObjectURL(file);
    const local = { url: preview, name: file.name, content_type: file.type };
    const el = lineElement({ from: "visitor", text: "", attachments: [local] }, true);
    state.byClient.set(clientId, el);
    appendLine(el, true);
    scrollDown();
    const body = new FormData();
    body.append("visitor", state.token || "");
    body.append("client_id", clientId);
    body.append("lang", LANG);
    if (kind) body.append("kind", kind);
    body.append("file", file, file.name);
    let answer = {};
    let status = 0;
    try {
      // No cookies and no custom headers: a simple cross-origin request, no preflight.
      const response = await fetch(UPLOAD_URL, { method: "POST", body, credentials: "omit" });
      status = response.status;
      answer = await response.json().catch(() => ({}));
    } catch {
      status = 0;
    }
    if (status >= 200 && status < 300) {
      settle(clientId, answer);
      // The server's copy replaces the local preview once it says where it is.
      if (answer.attachments?.length) {
        showAttachments(el, answer.attachments);
        URL.revokeObjectURL(preview);
      }
      return;
    }
    const text =
      status === 413
        ? tooLarge()
        : errorText({ 415: "upload_type", 429: "rate_limited" }[status] || "upload_failed");
    setLineState(el, "failed", null, text);
    giveKindBack(clientId, kind);
  }

  // ---- office hours ---------------------------------------------------------------------------

  function showHours() {
    const closed = !state.open;
    // The visitor was typing in the field that is about to go: continue in the other one.
    const typing = ui.shadow.activeElement;
    ui.offline.hidden = !closed;
    ui.composer.hidden = closed;
    ui.contact.hidden = closed;
    if (typing === ui.text && closed) ui.offlineText.focus();
    if (typing === ui.offlineText && !closed) ui.text.focus();
    if (!closed) return;
    ui.closedText.textContent = S.closed;
    const next = state.nextOpen ? new Date(state.nextOpen) : null;
    if (next && !Number.isNaN(next.getTime())) {
      // In the town's time zone: "maandag 30 november om 08:30".
      const format = (options) => {
        try {
          const zoned = { ...options, timeZone: state.timezone };
          return new Intl.DateTimeFormat(LOCALES[LANG], zoned).format(next);
        } catch {
          return new Intl.DateTimeFormat(LOCALES[LANG], options).format(next); // unknown zone
        }
      };
      const day = format({ weekday: "long", day: "numeric", month: "long" });
      const time = format({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
      ui.closedText.textContent = `${S.closed} ${t(S.back_on, { day, time })}`;
    }
  }

  function showReference(reference) {
    state.reference = reference || null;
    say(ui.reference, reference ? t(S.reference, { ref: reference }) : null);
    showKind();
  }

  function showQueue(queue) {
    const position = queue && typeof queue === "object" ? queue.position : queue;
    say(ui.queue, Number.isInteger(position) ? t(S.queue, { n: position }) : null);
  }

  function showStatus(key) {
    say(ui.status, key ? S[key] : null);
  }

  // ---- the connection -------------------------------------------------------------------------

  function sendFrame(frame) {
    if (!state.ws || !state.welcomed) return false; // kept in the outbox; sent after welcome
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function flushOutbox() {
    for (const frame of state.outbox) state.ws.send(JSON.stringify(frame));
  }

  const HANDLERS = {
    welcome(frame) {
      state.token = frame.visitor;
      store.set("localStorage", TOKEN_KEY, frame.visitor);
      state.welcomed = true;
      state.attempt = 0;
      state.limits = { ...state.limits, ...(frame.limits || {}) };
      state.open = frame.open !== false;
      state.nextOpen = frame.next_open || null;
      state.timezone = frame.timezone || state.timezone;
      ui.attach.disabled = false;
      showStatus(null);
      const transcript = frame.transcript || [];
      for (const line of transcript) showLine(line);
      dropStaleChoices();
      if (transcript.length) offerChoices(transcript[transcript.length - 1]);
      showReference(frame.reference);
      showQueue(frame.queue);
      showHours();
      if (frame.contact?.email || frame.contact?.phone) showContactSaved(frame.contact);
      showCounter();
      scrollToNow();
      flushOutbox();
    },
    received(frame) {
      settle(frame.client_id, frame);
    },
    message(frame) {
      if (frame.from === "visitor") clearChoices(); // answered in another tab
      const fresh = showLine(frame);
      dropStaleChoices();
      // Also for a line the welcome showed already: the transcript carries no answers.
      offerChoices(frame);
      if (fresh) {
        scrollDown();
        if (ui.panel.hidden && frame.from === "staff") setUnread(state.unread + 1);
      }
    },
    queue(frame) {
      showQueue(frame.position);
    },
    hours(frame) {
      state.open = frame.open !== false;
      state.nextOpen = frame.next_open || null;
      showHours();
    },
    contact_saved(frame) {
      showContactSaved(frame);
    },
    error(frame) {
      const index = frame.client_id
        ? state.outbox.findIndex((f) => f.client_id === frame.client_id)
        : -1;
      if (index < 0) {
        // Without a client_id: the contact form's answer, if one is awaited.
        if (state.contactSending) {
          state.contactSending = false;
          const field = frame.code === "invalid_phone" ? ui.contactPhone : ui.contactEmail;
          showFieldError(ui.contactError, frame.code, field, [ui.contactEmail, ui.contactPhone]);
        }
        return;
      }
      const el = state.byClient.get(frame.client_id);
      if (frame.code === "unavailable") {
        // Intake is down for a moment: keep the message, say so, try again shortly.
        if (el) setLineState(el, "pending", null, errorText("unavailable"));
        setTimeout(() => {
          const again = state.outbox.find((f) => f.client_id === frame.client_id);
          if (again) sendFrame(again);
        }, 5000);
        return;
      }
      const [frameSent] = state.outbox.splice(index, 1);
      saveOutbox();
      // Refused for good (a rate-limited message is sent again as it is, kind and all).
      if (frame.code !== "rate_limited") giveKindBack(frame.client_id, frameSent.kind);
      if (frameSent.type === "offline_message") {
        // Back into the form, with the problem next to it.
        if (el) el.remove();
        state.byClient.delete(frame.client_id);
        ui.offlineText.value = frameSent.text;
        ui.offlineEmail.value = frameSent.email || "";
        ui.offlinePhone.value = frameSent.phone || "";
        const fields = [ui.offlineText, ui.offlineEmail, ui.offlinePhone];
        const where = { invalid_phone: "offlinePhone", invalid_email: "offlineEmail" };
        where.need_address = where.invalid_email;
        const field = ui[where[frame.code] || "offlineText"];
        showFieldError(ui.offlineError, frame.code, field, fields);
        return;
      }
      if (!el) return;
      const retry = frame.code === "rate_limited" ? () => resend(frame.client_id) : null;
      if (retry) el._frame = frameSent;
      setLineState(el, "failed", null, errorText(frame.code), retry);
    },
  };

  function connect() {
    clearTimeout(state.retryTimer);
    if (state.ws) return;
    if (!state.attempt) showStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch {
      reconnectLater();
      return;
    }
    state.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "hello", visitor: state.token, lang: LANG }));
      heartbeat(ws);
    });
    ws.addEventListener("message", (event) => {
      clearTimeout(state.pongTimer); // any frame shows the connection is alive
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      const known = frame && Object.prototype.hasOwnProperty.call(HANDLERS, frame.type);
      if (known) HANDLERS[frame.type](frame);
    });
    ws.addEventListener("close", () => dropped(ws));
  }

  function dropped(ws) {
    if (state.ws !== ws) return; // already given up on
    state.ws = null;
    state.welcomed = false;
    clearInterval(state.pingTimer);
    clearTimeout(state.pongTimer);
    for (const frame of state.outbox) {
      const el = state.byClient.get(frame.client_id);
      if (el) setLineState(el, "pending");
    }
    reconnectLater();
  }

  // Exponential back-off from 1 s to 30 s, each wait between half and all of its step, so many
  // visitors cut off by the same server restart do not all come back in the same second.
  function reconnectLater() {
    showStatus("disconnected");
    const step = Math.min(30000, 1000 * 2 ** state.attempt);
    state.attempt += 1;
    state.retryTimer = setTimeout(connect, Math.max(1000, step / 2 + Math.random() * (step / 2)));
  }

  function heartbeat(ws) {
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: "ping" }));
      clearTimeout(state.pongTimer);
      // A dead connection can take minutes to report its close: give up on it now.
      state.pongTimer = setTimeout(() => {
        dropped(ws);
        ws.close();
      }, PONG_WITHIN);
    }, PING_EVERY);
  }

  // Back on the network: no need to wait for the next back-off step.
  window.addEventListener("online", () => {
    if (!state.ws && state.retryTimer) connect();
  });

  // ---- start ----------------------------------------------------------------------------------

  function start() {
    build();
    // Messages kept from an earlier page are shown, pending, until the server has them.
    for (const frame of state.outbox) {
      const el = lineElement({ from: "visitor", text: frame.text || "", attachments: [] }, true);
      state.byClient.set(frame.client_id, el);
      appendLine(el, true);
    }
    showKind();
    // A visitor with a conversation gets staff answers live, also before opening the panel;
    // anyone else connects on first opening (no socket per page view of the town's site).
    if (store.get("sessionStorage", OPEN_KEY)) openPanel(false);
    else if (state.token || state.outbox.length) connect();
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
