/* Product Photo Studio: KIE's balance from GET /credits, shown beside Generate and used by the queue's estimate
 * (PPA.balance.get()); asked again after a task finishes. Plain JS, CSP-safe; loaded after core.js. */
'use strict';
(function (PPA) {
  const { $, apiFull, token, fmtWhen, cfg } = PPA;
  const CREDITS_CACHE_S = 31;    /* the server keeps KIE's balance 30 s: ask again after that when it was older */
  let credits = null;        /* the last GET /credits answer */
  let creditsTimer = null;

  /* "312 credits ≈ 62 images at 1K" beside Generate, for the chosen resolution. Nothing when the balance is
   * unknown (no key, KIE unreachable, an older server): then only a tooltip on the row says why. */
  function renderCredits() {
    const el = $('credits');
    const row = $('gen-row');
    const c = credits;
    if (!c || !Number.isFinite(c.balance)) {
      el.hidden = true;
      el.textContent = '';
      el.removeAttribute('title');
      if (c && typeof c.balance_error === 'string' && c.balance_error) row.title = 'KIE balance unknown: ' + c.balance_error;
      else row.removeAttribute('title');
      return;
    }
    row.removeAttribute('title');
    const res = $('resolution').value;
    const price = c.price && Number(c.price[res]) > 0 ? Number(c.price[res]) : 0;
    let left = c.images_left && Number.isFinite(c.images_left[res]) ? c.images_left[res] : null;
    if (left === null && price) left = Math.floor(c.balance / price);
    const n = (v, one, many) => v.toLocaleString() + ' ' + (v === 1 ? one : many);
    el.textContent = n(c.balance, 'credit', 'credits') + (left !== null ? ' ≈ ' + n(left, 'image', 'images') + ' at ' + res : '');
    el.classList.toggle('low', left !== null && left < 1);
    const src = c.price_source && c.price_source[res] === 'tasks' ? 'the average of this server\'s tasks' : 'KIE\'s price list';
    const checked = Date.parse(c.checked_at);
    const lines = ['KIE balance' + (Number.isFinite(checked) ? ', checked ' + fmtWhen(checked) : '')];
    if (price) lines.push(price + ' credits per ' + res + ' image (' + src + ')');
    if (Number.isFinite(c.spent_today)) {
      lines.push('Spent today: ' + n(c.spent_today, 'credit', 'credits') +
        (Number.isFinite(c.generations_today) ? ' on ' + n(c.generations_today, 'generation', 'generations') : '') +
        (Number(c.daily_limit) > 0 ? ' (limit ' + c.daily_limit + ' a day)' : ''));
    }
    el.title = lines.join('\n');
    el.hidden = false;
  }
  async function loadCredits() {
    if (cfg.auth_required && !token()) return null;
    let r;
    try { r = await apiFull('/credits', { background: true }); } catch (e) { r = null; }
    credits = r && r.body && typeof r.body === 'object' ? r.body : null;
    renderCredits();
    document.dispatchEvent(new Event('ppa:credits'));   /* the queue's estimate */
    return r;
  }
  /* After a task finishes: ask again at once, and once more when the server's 30 s cache of KIE's balance
   * (checked_at, on the server's clock: compared with its Date header) may still hold the value from before. */
  async function creditsAfterTask() {
    clearTimeout(creditsTimer);
    const r = await loadCredits();
    if (!r || !credits || !Number.isFinite(credits.balance)) return;
    const checked = Date.parse(credits.checked_at);
    const now = Date.parse(r.headers.get('Date') || '') || Date.now();
    const age = (now - checked) / 1000;
    if (Number.isFinite(age) && age > 2) {
      creditsTimer = setTimeout(loadCredits, Math.max(1, CREDITS_CACHE_S - Math.min(age, CREDITS_CACHE_S)) * 1000);
    }
  }

  $('resolution').addEventListener('change', renderCredits);

  PPA.balance = { get: () => credits, load: loadCredits, afterTask: creditsAfterTask };
}(window.PPA));
