// The dashboard's only script (no inline script: the Content-Security-Policy allows 'self').
// A date chosen in the 统计日期 list shows that day's figures at once.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
