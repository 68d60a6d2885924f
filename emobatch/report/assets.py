"""The report page's inline style sheet, script and Content-Security-Policy."""

# Nothing may be fetched but the linked annotated MP4s (media-src) and inline data.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; media-src 'self' file: data: blob:")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;
color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 0;z-index:2}
h1{font-size:20px;margin:4px 0}h1 small{color:#777;font-weight:normal}h2{margin:28px 0 4px}
.legend .chip{margin-right:4px}
.chip{display:inline-block;padding:0 6px;border-radius:8px;color:#000;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}dd{margin:0}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
tr[data-t]{cursor:pointer}tr[data-t]:hover{background:#f3f6ff}
.mix{display:inline-flex;width:140px;height:12px;background:#eee;vertical-align:middle}
.mix i{display:block;height:100%}
.thumb{height:40px;border-radius:3px;vertical-align:middle}
video{display:block;width:100%;max-width:720px;max-height:405px;background:#000}
.plots{margin-top:6px}.trow{display:flex;align-items:center;margin:3px 0}
.who{width:215px;flex:none;display:flex;align-items:center;gap:6px;font-size:12px}
.who small{color:#666}
.chart{position:relative;flex:1;cursor:crosshair}
.area{display:block;width:100%;height:48px;background:#f4f4f4}
.eps{display:block;width:100%;height:8px;margin-top:1px}.eps rect{cursor:pointer}
.ph{position:absolute;top:0;bottom:0;width:2px;background:#000;left:0;pointer-events:none}
.yax{position:relative;width:30px;flex:none;height:57px;font-size:10px;color:#666}
.yax span{position:absolute;left:4px;transform:translateY(-50%)}
.yspace{width:30px;flex:none}.plegend{font-size:12px;color:#444}.plegend .chip{margin:0 2px}
details pre{font-size:11px;max-width:900px;overflow:auto;background:#f6f6f6;padding:4px}
.axis{position:relative;flex:1;height:16px;font-size:11px;color:#666}
.axis span{position:absolute;transform:translateX(-50%)}
.note,.now{color:#666;font-size:12px}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;text-align:center;font-size:12px}figure .thumb{height:64px}
"""

# Seeking: a click on a plot goes to that time, on an episode or a table row to its onset.
JS = """
document.querySelectorAll('section.video').forEach(function (sec) {
  var video = sec.querySelector('video'), dur = +sec.dataset.dur;
  var now = sec.querySelector('.now span');
  function fmt(t) { var m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
    return m + ':' + (s < 10 ? '0' : '') + s; }
  function show(t) {
    sec.querySelectorAll('.ph').forEach(function (p) { p.style.left = (100 * t / dur) + '%'; });
    now.textContent = fmt(t);
  }
  function seek(t) { if (video) { video.currentTime = t; } show(t); }
  sec.querySelectorAll('.chart').forEach(function (c) {
    c.addEventListener('click', function (e) {
      var t = e.target.closest('[data-t]');
      if (t) { seek(+t.dataset.t); return; }
      var r = c.getBoundingClientRect();
      seek(Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)) * dur);
    });
  });
  sec.querySelectorAll('tr[data-t]').forEach(function (row) {
    row.addEventListener('click', function () { seek(+row.dataset.t); });
  });
  if (video) { video.addEventListener('timeupdate', function () { show(video.currentTime); }); }
});
"""

