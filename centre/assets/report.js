// The printable report: the browser's own print dialog prints it or saves it as PDF.
"use strict";
document.getElementById("print").addEventListener("click", () => window.print());
