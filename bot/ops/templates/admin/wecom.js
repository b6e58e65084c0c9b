// /admin/wecom: 随机生成 (WeCom's Token / EncodingAESKey alphabet), copy buttons, the CSV file into its textarea.
"use strict";
(function () {
  var ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  function random(n) {
    var bytes = new Uint8Array(n), out = "";
    window.crypto.getRandomValues(bytes);
    for (var i = 0; i < n; i++) out += ALPHABET[bytes[i] % ALPHABET.length];
    return out;
  }
  document.querySelectorAll("[data-random]").forEach(function (b) {
    b.addEventListener("click", function () {
      var input = document.getElementById(b.dataset.target);
      input.type = "text"; // shown once, so it can be copied into the WeCom console
      input.value = random(parseInt(b.dataset.random, 10));
    });
  });
  document.querySelectorAll("[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var el = document.getElementById(b.dataset.copy);
      var text = el.value !== undefined ? el.value : el.textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text.trim());
      b.textContent = "已复制";
    });
  });
  document.querySelectorAll("[data-fill]").forEach(function (input) {
    input.addEventListener("change", function () {
      var file = input.files[0];
      if (!file) return;
      file.text().then(function (t) { document.getElementById(input.dataset.fill).value = t; });
    });
  });
})();
