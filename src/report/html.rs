//! The report page: one HTML document with its style, script and SVG
//! charts inline, so it opens from a `file://` address with no network.
//!
//! Everything from the recording is untrusted: paths and diff text are raw
//! bytes, turned into text (lossy UTF-8, control characters escaped in
//! paths) and then HTML-escaped; data for the script is JSON with `<`
//! escaped, so no path or file content can end an element or start one.
//! The only links are `#` anchors inside the page.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

use super::model::{self, Bucket, ChangeAt, Event, EventKind, Model, StatPoint};
use crate::render::human;

/// Columns a chart is cut into: about the pixels of a wide monitor's plot.
pub const COLUMNS: usize = 1800;

/// What the page says besides the model.
#[derive(Clone, Debug)]
pub struct Options {
    /// The store, as `monitord show --store` should name it.
    pub store: String,
    /// The target's command line, when known.
    pub command: Option<String>,
    /// The backend, when known.
    pub backend: Option<String>,
    /// Bytes of diff text to embed, newest changes first.
    pub diff_budget: usize,
    /// Samples of map changes to list, newest first.
    pub maps_budget: usize,
    /// Events to list in the events table, newest first.
    pub events_budget: usize,
    /// The time zone times are shown in.
    pub tz: TimeZone,
}

impl Options {
    /// The defaults for `store`: a few MB of diffs, the system time zone.
    pub fn new(store: String) -> Options {
        Options {
            store,
            command: None,
            backend: None,
            diff_budget: 3 << 20,
            maps_budget: 2000,
            events_budget: 2000,
            tz: TimeZone::system(),
        }
    }
}

/// HTML-escape text for an element's content or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(text, &mut out);
    out
}

fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// A path from the tree, for the page: control characters and invalid
/// UTF-8 as `\xNN` (as the terminal output shows them), then escaped.
pub fn path(bytes: &[u8]) -> String {
    escape(&human::sanitize(bytes))
}

/// JSON for a `<script type="application/json">` element: `<` is written
/// `\u003c` (it only occurs inside strings), so nothing closes the element.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

/// A path quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:".contains(&b)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

struct Clock<'t> {
    tz: &'t TimeZone,
}

impl Clock<'_> {
    fn zoned(&self, time_us: u64) -> Option<jiff::Zoned> {
        let ts = jiff::Timestamp::from_microsecond(i64::try_from(time_us).ok()?).ok()?;
        Some(ts.to_zoned(self.tz.clone()))
    }
    fn format(&self, time_us: u64, pattern: &str) -> String {
        self.zoned(time_us).map_or_else(|| "?".to_string(), |z| z.strftime(pattern).to_string())
    }
    /// `HH:MM:SS.mmm`.
    fn time(&self, time_us: u64) -> String {
        self.format(time_us, "%H:%M:%S%.3f")
    }
    /// `YYYY-MM-DD HH:MM:SS.mmm`.
    fn full(&self, time_us: u64) -> String {
        self.format(time_us, "%Y-%m-%d %H:%M:%S%.3f")
    }
    /// Seconds east of UTC at `time_us`.
    fn offset_s(&self, time_us: u64) -> i64 {
        self.zoned(time_us).map_or(0, |z| i64::from(z.offset().seconds()))
    }
}

/// A human duration: `850 ms`, `12.3 s`, `4 min 10 s`, `2 h 5 min`, `3 d 4 h`.
fn duration(us: u64) -> String {
    let ms = us / 1000;
    let s = us / 1_000_000;
    match s {
        0 => format!("{ms} ms"),
        1..60 => format!("{:.1} s", us as f64 / 1e6),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// KiB as `512 KiB`, `12.5 MiB`, `1.2 GiB`.
fn kib(value: f64) -> String {
    if value < 1024.0 {
        format!("{value:.0} KiB")
    } else if value < 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / 1024.0)
    } else {
        format!("{:.2} GiB", value / (1024.0 * 1024.0))
    }
}

/// The smallest "nice" number (1, 2, 5 × 10^k) at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|v| *v >= value * 0.9999).unwrap_or(value)
}

/// Time-axis ticks over `t0..=t1`: at most about seven, at round local
/// times. Returns (time, label).
fn ticks(t0: u64, t1: u64, clock: &Clock<'_>) -> Vec<(u64, String)> {
    const STEPS_MS: [u64; 31] = [
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        200,
        500,
        1000,
        2000,
        5000,
        10_000,
        15_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        900_000,
        1_800_000,
        3_600_000,
        7_200_000,
        10_800_000,
        21_600_000,
        43_200_000,
        86_400_000,
        172_800_000,
        604_800_000,
        1_209_600_000,
        2_592_000_000,
    ];
    let span = t1.saturating_sub(t0);
    let step_ms = STEPS_MS.iter().copied().find(|s| span / (s * 1000) <= 6).unwrap_or(2_592_000_000);
    let step = step_ms * 1000;
    let offset = clock.offset_s(t0) * 1_000_000;
    let local0 = t0 as i64 + offset;
    let first = (local0.div_euclid(step as i64) + 1) * step as i64 - offset;
    let days = clock.format(t0, "%F") != clock.format(t1, "%F");
    let pattern = match step_ms {
        0..1000 => "%H:%M:%S%.3f",
        1000..60_000 if days => "%m-%d %H:%M:%S",
        1000..60_000 => "%H:%M:%S",
        60_000..86_400_000 if days => "%m-%d %H:%M",
        60_000..86_400_000 => "%H:%M",
        _ => "%Y-%m-%d",
    };
    let mut out = Vec::new();
    let mut t = first.max(0) as u64;
    while t <= t1 && out.len() < 12 {
        out.push((t, clock.format(t, pattern)));
        t += step;
    }
    out
}

/// The x of column `i`'s centre, in the plot's viewBox units.
fn cx(i: usize) -> f64 {
    i as f64 + 0.5
}

/// A chart's series, downsampled.
struct Series {
    id: &'static str,
    title: &'static str,
    colour: &'static str,
    unit: fn(f64) -> String,
    columns: Vec<Option<Bucket>>,
    points: usize,
}

impl Series {
    fn top(&self) -> f64 {
        nice_ceiling(self.columns.iter().flatten().map(|b| b.max).fold(0.0, f64::max))
    }
}

/// Height of a chart's viewBox (its CSS height is what the reader sees).
const PLOT_H: f64 = 100.0;

/// An SVG plot of one series: a light band from each column's minimum to
/// its maximum and a line through the maxima, so spikes stay visible.
fn series_svg(series: &Series, breaks: &[usize], out: &mut String) {
    let top = series.top();
    // 4 units of room at both ends, so a dot at 0 or at the top shows whole.
    let y = |v: f64| PLOT_H - 4.0 - (v / top * (PLOT_H - 8.0)).clamp(0.0, PLOT_H - 8.0);
    let _ = write!(
        out,
        "<svg class=\"plot-svg\" viewBox=\"0 0 {COLUMNS} {PLOT_H}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{}\">",
        series.title
    );
    grid_lines(out);
    let mut band = String::new();
    let mut line = String::new();
    let mut dots = String::new();
    let mut previous: Option<usize> = None;
    for (i, b) in series.columns.iter().enumerate() {
        let Some(b) = b else { continue };
        let (lo, hi) = (y(b.min), y(b.max));
        if hi < lo - 0.01 {
            let _ = write!(band, "M{:.1} {lo:.2}V{hi:.2}", cx(i));
        }
        let joined = previous.is_some_and(|p| !breaks.iter().any(|&k| p < k && k <= i));
        let _ = write!(line, "{}{:.1} {hi:.2}", if joined { "L" } else { "M" }, cx(i));
        previous = Some(i);
        if series.points <= 300 {
            let _ = write!(dots, "M{:.1} {hi:.2}h0", cx(i));
        }
    }
    let c = series.colour;
    if !band.is_empty() {
        let _ = write!(out, "<path class=\"band\" d=\"{band}\" stroke=\"{c}\"/>");
    }
    if !line.is_empty() {
        let _ = write!(out, "<path class=\"line\" d=\"{line}\" stroke=\"{c}\"/>");
    }
    if !dots.is_empty() {
        let _ = write!(out, "<path class=\"dots\" d=\"{dots}\" stroke=\"{c}\"/>");
    }
    out.push_str("</svg>");
}

fn grid_lines(out: &mut String) {
    for y in [PLOT_H * 0.5, PLOT_H * 0.25 - 0.5, PLOT_H * 0.75] {
        let _ = write!(out, "<path class=\"grid\" d=\"M0 {y:.1}H{COLUMNS}\"/>");
    }
}

/// Write the page for `model`.
pub fn write(model: &Model<'_>, options: &Options) -> String {
    let mut page = Page { out: String::with_capacity(1 << 20), clock: Clock { tz: &options.tz }, options };
    page.document(model);
    page.out
}

struct Page<'o> {
    out: String,
    clock: Clock<'o>,
    options: &'o Options,
}

impl Page<'_> {
    fn document(&mut self, model: &Model<'_>) {
        self.out.push_str(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
             <link rel=\"icon\" href=\"data:,\">",
        );
        let title = match model.pids.first() {
            Some(pid) => format!("monitord report: pid {pid}"),
            None => "monitord report".to_string(),
        };
        let _ = write!(self.out, "<title>{}</title><style>{}</style></head><body>", escape(&title), CSS);
        self.header(model);
        let Some(((_, t0), (_, t1))) = model.span else {
            self.out.push_str("<main><p class=\"empty\">The ring holds no records in this range.</p></main>");
            self.out.push_str("</body></html>\n");
            return;
        };
        self.out.push_str("<main>");
        // A little room on both sides, so the first and last points show whole.
        let pad = ((t1 - t0) / 80).max(1000);
        let mut data = self.charts(model, t0.saturating_sub(pad), t1 + pad);
        self.file_table(model);
        let (files, diffs) = self.histories(model, data["t0"].as_u64().unwrap_or(0));
        data["files"] = files;
        data["diffs"] = diffs;
        self.map_changes(model);
        self.events(model);
        self.out.push_str("</main>");
        let _ = writeln!(
            self.out,
            "<script type=\"application/json\" id=\"report-data\">{}</script><script>{}</script></body></html>",
            script_json(&data),
            JS
        );
    }

    fn header(&mut self, model: &Model<'_>) {
        let o = self.options;
        self.out.push_str("<header><div class=\"title\"><h1>monitord report</h1>");
        let _ = write!(self.out, "<span class=\"store\">{}</span></div>", escape(&o.store));
        self.out.push_str("<dl class=\"facts\">");
        let pids = if model.pids.is_empty() {
            "none".to_string()
        } else {
            model.pids.iter().map(i32::to_string).collect::<Vec<_>>().join(" → ")
        };
        self.fact("PID", &escape(&pids), "");
        if let Some(command) = &o.command {
            self.fact("command", &format!("<code>{}</code>", escape(command)), "wide");
        }
        let cwds: Vec<String> = model.cwds.iter().map(|c| path(c)).collect();
        self.fact(
            if cwds.len() > 1 { "cwds" } else { "cwd" },
            &format!("<code>{}</code>", if cwds.is_empty() { "?".to_string() } else { cwds.join(" → ") }),
            "wide",
        );
        if let Some(((s0, t0), (s1, t1))) = model.span {
            let span = format!(
                "{} → {} <span class=\"dim\">({}, seq {s0}..{s1})</span>",
                self.clock.full(t0),
                if self.clock.format(t0, "%F") == self.clock.format(t1, "%F") {
                    self.clock.time(t1)
                } else {
                    self.clock.full(t1)
                },
                duration(t1 - t0)
            );
            self.fact("time span", &span, "wide");
        }
        let backend = o.backend.clone().unwrap_or_else(|| "not recorded".to_string());
        self.fact("backend", &escape(&backend), "");
        let c = model.counts;
        for (name, value) in [
            ("samples", c.samples),
            ("changes", c.changes),
            ("files", c.files),
            ("writers", c.writers),
            ("marks", c.marks),
            ("gaps", c.gaps),
        ] {
            let class = if name == "gaps" && value > 0 { "warn" } else { "" };
            self.fact(name, &value.to_string(), class);
        }
        self.out.push_str("</dl></header>");
        self.out.push_str(
            "<nav><a href=\"#timeline\">Timeline</a><a href=\"#files\">Files</a>\
             <a href=\"#histories\">Histories</a><a href=\"#maps\">Map changes</a><a href=\"#events\">Events</a>\
             <span class=\"spacer\"></span>\
             <label class=\"toggle\"><input type=\"checkbox\" id=\"reverse\"> reverse diffs</label>\
             <input type=\"search\" id=\"search\" placeholder=\"Search paths and diffs\" autocomplete=\"off\">\
             <span id=\"search-count\" class=\"dim\"></span></nav>",
        );
    }

    fn fact(&mut self, name: &str, value_html: &str, class: &str) {
        let _ = write!(self.out, "<div class=\"fact {class}\"><dt>{name}</dt><dd>{value_html}</dd></div>");
    }

    /// The timeline and the statistics charts on one time axis; returns
    /// the data the script needs for hovering.
    fn charts(&mut self, model: &Model<'_>, t0: u64, t1: u64) -> serde_json::Value {
        let n = COLUMNS;
        self.out.push_str("<section id=\"timeline\" class=\"card\"><h2>Timeline</h2>");
        self.out.push_str("<div class=\"readout\" id=\"readout\">Point at a chart to see the sample; click to pin it.</div>");
        self.out.push_str("<div class=\"charts\" id=\"charts\">");

        // Changes per sample: bars, √ scale so small changes stay visible.
        let activity =
            model::buckets(model.activity.iter().map(|a| (a.time_us, a.seq, a.lines as f64)), t0, t1, n);
        let files_per_col =
            model::buckets(model.activity.iter().map(|a| (a.time_us, a.seq, a.files as f64)), t0, t1, n);
        let top = nice_ceiling(activity.iter().flatten().map(|b| b.max).fold(0.0, f64::max));
        self.out.push_str("<div class=\"row tall\" data-series=\"changes\"><div class=\"label\">");
        let _ = write!(
            self.out,
            "<span class=\"name\"><i style=\"background:{}\"></i>lines changed</span>\
             <span class=\"scale\">0 – {top} per sample, √ scale</span></div><div class=\"plot\">",
            COLOUR_CHANGES
        );
        let _ = write!(
            self.out,
            "<svg class=\"plot-svg\" viewBox=\"0 0 {n} {PLOT_H}\" preserveAspectRatio=\"none\" role=\"img\" \
             aria-label=\"lines changed per sample\">"
        );
        grid_lines(&mut self.out);
        let mut bars = String::new();
        for (i, b) in activity.iter().enumerate() {
            if let Some(b) = b {
                let h = ((b.max / top).sqrt() * (PLOT_H - 4.0)).max(3.0);
                let _ = write!(bars, "M{:.1} {PLOT_H}V{:.2}", cx(i), PLOT_H - h);
            }
        }
        let dense = model.activity.len() > n / 4;
        let _ = write!(
            self.out,
            "<path class=\"bars{}\" d=\"{bars}\" stroke=\"{COLOUR_CHANGES}\"/></svg></div></div>",
            if dense { " dense" } else { "" }
        );

        // Event lanes.
        let lanes = ["mark", "pid", "cwd", "exit", "rescan", "gap", "baseline"];
        self.out.push_str("<div class=\"row lanes\"><div class=\"label lane-names\">");
        for lane in lanes {
            let _ = write!(self.out, "<span><i class=\"ev-{lane}\"></i>{lane}</span>");
        }
        self.out.push_str("</div><div class=\"plot\">");
        let lane_h = PLOT_H / lanes.len() as f64;
        let _ = write!(
            self.out,
            "<svg class=\"plot-svg\" viewBox=\"0 0 {n} {PLOT_H}\" preserveAspectRatio=\"none\" role=\"img\" \
             aria-label=\"events\">"
        );
        let mut event_cols: Vec<serde_json::Value> = Vec::new();
        for (li, lane) in lanes.iter().enumerate() {
            let mut d = String::new();
            let mut last = None;
            for e in model.events.iter().filter(|e| e.kind.lane() == *lane) {
                let i = model::column(e.time_us, t0, t1, n);
                if last != Some(i) {
                    let y0 = li as f64 * lane_h + 2.0;
                    let _ = write!(d, "M{:.1} {y0:.2}V{:.2}", cx(i), y0 + lane_h - 4.0);
                    last = Some(i);
                }
            }
            if !d.is_empty() {
                let _ = write!(self.out, "<path class=\"tick ev-{lane}\" d=\"{d}\"/>");
            }
        }
        self.out.push_str("</svg>");
        // Mark names, where they fit (assuming the plot of a laptop screen).
        let mut free_from = 0.0;
        for e in &model.events {
            if let EventKind::Mark { name } = &e.kind {
                let x = cx(model::column(e.time_us, t0, t1, n)) / n as f64 * 100.0;
                let width = (name.chars().count().min(24) as f64 * 7.0 + 16.0) / 1050.0 * 100.0;
                if x >= free_from && x + width <= 100.0 {
                    let short: String = name.chars().take(24).collect();
                    let _ = write!(
                        self.out,
                        "<span class=\"mark-label\" style=\"left:{x:.3}%\" title=\"{}\">{}</span>",
                        escape(name),
                        escape(&short)
                    );
                    free_from = x + width;
                }
            }
        }
        self.out.push_str("</div></div>");
        for e in &model.events {
            event_cols.push(serde_json::json!([
                model::column(e.time_us, t0, t1, n),
                e.seq,
                e.time_us / 1000,
                e.kind.lane(),
                event_text(e),
            ]));
        }

        // Statistics.
        let series = stat_series(model, t0, t1, n);
        // A line does not join two processes, nor the two sides of a gap.
        let breaks: Vec<usize> = model
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Pid { .. } | EventKind::Gap { wrap: false, .. }))
            .map(|e| model::column(e.time_us, t0, t1, n))
            .collect();
        for s in &series {
            if s.points == 0 {
                continue;
            }
            let top = s.top();
            let _ = write!(
                self.out,
                "<div class=\"row\" data-series=\"{}\"><div class=\"label\"><span class=\"name\">\
                 <i style=\"background:{}\"></i>{}</span><span class=\"scale\">0 – {}</span></div>\
                 <div class=\"plot\">",
                s.id,
                s.colour,
                s.title,
                escape(&(s.unit)(top))
            );
            series_svg(s, &breaks, &mut self.out);
            self.out.push_str("</div></div>");
        }
        if series.iter().all(|s| s.points == 0) {
            self.out.push_str(
                "<p class=\"dim note\">No process statistics were recorded (the monitor ran with \
                 <code>--record files</code>, or no sample carried them).</p>",
            );
        }
        // The time axis.
        self.out.push_str("<div class=\"row axis\"><div class=\"label\"></div><div class=\"plot\">");
        let span = (t1.saturating_sub(t0) + 1) as f64;
        for (t, label) in ticks(t0, t1, &self.clock) {
            let x = (t - t0) as f64 / span * 100.0;
            let _ = write!(
                self.out,
                "<span class=\"tick-label\" style=\"left:{x:.3}%\">{}</span>",
                escape(&label)
            );
        }
        self.out.push_str("</div></div></div>");
        self.out.push_str(
            "<div class=\"legend dim\">Each chart column is one slice of time; lines go through each \
             slice's largest value and the pale band reaches down to its smallest, so a one-sample spike \
             is never averaged away. CPU is the process's user + system time over wall time (100% = one \
             CPU).</div></section>",
        );

        let column_data = |columns: &[Option<Bucket>], round: fn(f64) -> f64| -> serde_json::Value {
            let mut idx = Vec::new();
            let mut min = Vec::new();
            let mut max = Vec::new();
            let mut seq = Vec::new();
            let mut time = Vec::new();
            let mut count = Vec::new();
            for (i, b) in columns.iter().enumerate() {
                if let Some(b) = b {
                    idx.push(i);
                    min.push(round(b.min));
                    max.push(round(b.max));
                    seq.push(b.max_seq);
                    time.push(b.max_time_us / 1000);
                    count.push(b.count);
                }
            }
            serde_json::json!({"i": idx, "min": min, "max": max, "seq": seq, "t": time, "n": count})
        };
        let whole = |v: f64| v.round();
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        let mut charts = serde_json::Map::new();
        charts.insert("changes".into(), column_data(&activity, whole));
        charts.insert("files".into(), column_data(&files_per_col, whole));
        for s in &series {
            charts.insert(s.id.into(), column_data(&s.columns, if s.id == "cpu" { tenth } else { whole }));
        }
        let offset_ms = self.clock.offset_s(t0) * 1000;
        serde_json::json!({
            "columns": n,
            "t0": t0 / 1000,
            "t1": t1 / 1000,
            "tzOffsetMs": offset_ms,
            "charts": charts,
            "events": event_cols,
        })
    }

    fn file_table(&mut self, model: &Model<'_>) {
        let _ = write!(
            self.out,
            "<section id=\"files\" class=\"card\"><h2>Files <span class=\"dim\">{} changed</span></h2>",
            model.files.len()
        );
        if model.files.is_empty() {
            self.out.push_str("<p class=\"dim\">No file changed in this range.</p></section>");
            return;
        }
        // The rows are drawn by the script from the page's data, as many
        // as are scrolled to: a table of 10,000 rows would take seconds.
        self.out.push_str(
            "<div class=\"table-wrap\" id=\"file-table-wrap\"><table id=\"file-table\"><thead><tr>\
             <th data-k=\"0\">path</th><th data-k=\"1\" class=\"num\">changes</th>\
             <th data-k=\"2\" class=\"num\">added</th><th data-k=\"3\" class=\"num\">removed</th>\
             <th data-k=\"4\">writers</th><th data-k=\"5\" class=\"time\">first change</th>\
             <th data-k=\"6\" class=\"time\">last change</th></tr></thead><tbody></tbody></table></div>\
             <p class=\"dim table-foot\" id=\"file-table-foot\"></p></section>",
        );
    }

    /// The histories' section (drawn by the script) and their data: per
    /// file its changes (seq, ms after `t0_ms`, kind's initial, lines
    /// added and removed, old path of a rename, writers, index of its diff
    /// or -1), and the diff text of the newest changes up to the budget.
    fn histories(&mut self, model: &Model<'_>, t0_ms: u64) -> (serde_json::Value, serde_json::Value) {
        // Which changes get their diff: the newest first, up to the budget.
        let mut all: Vec<(u64, usize, usize)> = model
            .files
            .iter()
            .enumerate()
            .flat_map(|(f, row)| row.changes.iter().enumerate().map(move |(c, ch)| (ch.seq, f, c)))
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        let mut diff_of: Vec<Vec<Option<usize>>> =
            model.files.iter().map(|row| vec![None; row.changes.len()]).collect();
        let mut diffs: Vec<String> = Vec::new();
        let mut used = 0usize;
        let mut left_out = 0usize;
        let mut left_out_newest: Option<(u64, usize)> = None;
        for (seq, f, c) in all {
            if used >= self.options.diff_budget {
                left_out += 1;
                if left_out_newest.is_none() {
                    left_out_newest = Some((seq, f));
                }
                continue;
            }
            let text = diff_text(&model.files[f].changes[c]);
            used += text.len() + 16;
            diff_of[f][c] = Some(diffs.len());
            diffs.push(text);
        }
        self.out.push_str("<section id=\"histories\" class=\"card\"><h2>File histories</h2>");
        if left_out > 0 {
            let example = left_out_newest.map_or_else(String::new, |(seq, f)| {
                format!(
                    "monitord show --store {} {seq} -- {}",
                    shell_quote(&self.options.store),
                    shell_quote(&human::sanitize(model.files[f].path))
                )
            });
            let _ = write!(
                self.out,
                "<p class=\"left-out\">The diffs of the {left_out} oldest changes are left out of this page \
                 (it embeds the newest {} of diff text); each is listed by its seq, and \
                 <code>monitord show --store {} SEQ -- PATH</code> prints it, for example <code>{}</code>.</p>",
                size(self.options.diff_budget),
                escape(&shell_quote(&self.options.store)),
                escape(&example)
            );
        }
        if model.files.is_empty() {
            self.out.push_str("<p class=\"dim\">No file changed in this range.</p>");
        }
        self.out.push_str(
            "<div id=\"history-list\"></div><p class=\"dim table-foot\" id=\"history-foot\"></p></section>",
        );
        let files: Vec<serde_json::Value> = model
            .files
            .iter()
            .zip(&diff_of)
            .map(|(row, diff_of)| {
                let changes: Vec<serde_json::Value> = row
                    .changes
                    .iter()
                    .zip(diff_of)
                    .map(|(c, d)| {
                        let by = c.writers.map(|w| model::writer_text(&model::FileWriters::from(w)));
                        // Compact: 67,000 changes must stay a few MB.
                        serde_json::json!([
                            c.seq,
                            (c.time_us / 1000).saturating_sub(t0_ms),
                            &c.change.change.name()[..1],
                            c.change.patch.lines_added(),
                            c.change.patch.lines_removed(),
                            c.change.from.as_deref().map(human::sanitize).unwrap_or_default(),
                            by.unwrap_or_default(),
                            d.map_or(-1, |d| d as i64),
                        ])
                    })
                    .collect();
                serde_json::json!({
                    "p": human::sanitize(row.path),
                    "w": model::writer_text(&row.writers),
                    "a": row.added,
                    "r": row.removed,
                    "c": changes,
                })
            })
            .collect();
        let show = format!("monitord show --store {} SEQ -- ", shell_quote(&self.options.store));
        (serde_json::json!({"list": files, "show": show}), serde_json::Value::from(diffs))
    }

    fn map_changes(&mut self, model: &Model<'_>) {
        let _ = write!(
            self.out,
            "<section id=\"maps\" class=\"card\"><h2>Map changes <span class=\"dim\">{} samples</span></h2>",
            model.maps.len()
        );
        if model.maps.is_empty() {
            self.out.push_str(
                "<p class=\"dim\">The memory map did not change (or was not recorded).</p></section>",
            );
            return;
        }
        let shown = model.maps.len().min(self.options.maps_budget);
        if shown < model.maps.len() {
            let _ = write!(
                self.out,
                "<p class=\"left-out\">The newest {shown} are listed; <code>monitord maps --store {} --at SEQ</code> \
                 prints the whole map at any sample.</p>",
                escape(&shell_quote(&self.options.store))
            );
        }
        for m in &model.maps[model.maps.len() - shown..] {
            // A long list (a library loaded, a process exec'd) starts folded.
            let lines = m.delta.added.len() + m.delta.removed.len();
            let _ = write!(
                self.out,
                "<details class=\"change\"{}><summary class=\"change-head\"><span class=\"seq\">#{}</span> {} \
                 <span class=\"add\">+{}</span> <span class=\"del\">-{}</span></summary><pre class=\"diff maps\">",
                if lines <= 16 { " open" } else { "" },
                m.seq,
                self.clock.full(m.time_us),
                m.delta.added.len(),
                m.delta.removed.len()
            );
            for (class, sign, lines) in [("r", '-', &m.delta.removed), ("a", '+', &m.delta.added)] {
                for line in lines {
                    let _ = writeln!(self.out, "<span class=\"{class}\">{sign}{}</span>", path(line));
                }
            }
            self.out.push_str("</pre></details>");
        }
        self.out.push_str("</section>");
    }

    fn events(&mut self, model: &Model<'_>) {
        let _ = write!(
            self.out,
            "<section id=\"events\" class=\"card\"><h2>Events <span class=\"dim\">{}</span></h2>",
            model.events.len()
        );
        let shown = model.events.len().min(self.options.events_budget);
        if shown < model.events.len() {
            let _ = write!(
                self.out,
                "<p class=\"left-out\">The newest {shown} are listed; <code>monitord log --store {}</code> lists all.</p>",
                escape(&shell_quote(&self.options.store))
            );
        }
        self.out.push_str(
            "<div class=\"table-wrap\"><table class=\"sortable events\"><thead><tr><th data-type=\"num\">seq</th>\
             <th data-type=\"num\">time</th><th data-type=\"text\">event</th><th data-type=\"text\">detail</th>\
             </tr></thead><tbody>",
        );
        for e in &model.events[model.events.len() - shown..] {
            let _ = write!(
                self.out,
                "<tr><td data-v=\"{}\">#{}</td><td data-v=\"{}\">{}</td><td><i class=\"dot ev-{}\"></i>{}</td><td>{}</td></tr>",
                e.seq,
                e.seq,
                e.time_us,
                self.clock.full(e.time_us),
                e.kind.lane(),
                e.kind.lane(),
                escape(&event_text(e))
            );
        }
        self.out.push_str("</tbody></table></div></section>");
    }
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KB", bytes >> 10)
    }
}

/// An event in words (plain text; the caller escapes it).
fn event_text(event: &Event) -> String {
    match &event.kind {
        EventKind::Baseline { files } => format!("baseline: {files} files tracked"),
        EventKind::Pid { old, new } => format!("following pid {new} (was {old})"),
        EventKind::Cwd { old, new } => {
            format!("cwd {} → {}", human::sanitize(old), human::sanitize(new))
        }
        EventKind::Exit { code, signal } => match (code, signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "exited".to_string(),
        },
        EventKind::Rescan { reason, dirs } => {
            format!("rescan of {dirs} director{}: {reason}", if *dirs == 1 { "y" } else { "ies" })
        }
        EventKind::Gap { from, to, wrap: true } => {
            format!("records {from}..{to} dropped by ring wrap-around ({})", plural(to - from + 1, "record"))
        }
        EventKind::Gap { from, to, wrap: false } => {
            format!("records {from}..{to} missing (damaged or skipped; {})", plural(to - from + 1, "record"))
        }
        EventKind::Mark { name } => format!("mark @{name}"),
        EventKind::Undecodable => "undecodable record".to_string(),
    }
}

/// A change's unified diff (`diff -u` text, lossy UTF-8); empty when
/// the patch has no hunks. The script colours it and writes it escaped.
fn diff_text(c: &ChangeAt<'_>) -> String {
    let (old, new) = human::diff_names(c.change);
    let mut text = Vec::new();
    c.change.patch.render_unified(&old, &new, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

const COLOUR_CHANGES: &str = "#3b5bdb";

fn stat_series(model: &Model<'_>, t0: u64, t1: u64, n: usize) -> Vec<Series> {
    let pts = &model.stats;
    // The points are read where they are, once, never copied: a long
    // recording has millions.
    let make = |id, title, colour, unit: fn(f64) -> String, value: fn(&StatPoint) -> Option<f64>| {
        let values = pts.iter().filter_map(move |p| Some((p.time_us, p.seq, value(&p)?)));
        let mut points = 0;
        let columns = model::buckets(values.clone().inspect(|_| points += 1), t0, t1, n);
        if n == 0 {
            // No column: `buckets` read nothing.
            points = values.count();
        }
        Series { id, title, colour, unit, points, columns }
    };
    let percent: fn(f64) -> String = |v| format!("{v:.0}%");
    let count: fn(f64) -> String = |v| format!("{v:.0}");
    vec![
        make("cpu", "CPU", "#e8590c", percent, |p| p.cpu),
        make("rss", "RSS", "#1c7ed6", kib, |p| Some(p.rss_kib as f64)),
        make("threads", "threads", "#7048e8", count, |p| Some(p.threads as f64)),
        make("fds", "open fds", "#2b8a3e", count, |p| Some(p.fds as f64)),
        make("maps", "mappings", "#0b7285", count, |p| Some(p.maps? as f64)),
    ]
}

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{
        Baseline, Body, Change, FORMAT_VERSION, FileChange, MapsDelta, Node, Record, Sample, Writers,
    };
    use crate::report::model::Entry;
    use std::time::Duration;

    const HOSTILE: &[&[u8]] = &[
        b"</script><script>alert(1)</script>.txt",
        b"<img src=x onerror=alert(2)>.txt",
        b"quote\"d' & amp.txt",
        b"bad\xff\xfe\x1b[31m.txt",
    ];

    fn page_of_hostile_paths() -> String {
        let files = HOSTILE
            .iter()
            .map(|p| {
                FileChange::new(
                    p.to_vec(),
                    Change::Created,
                    None,
                    Node::File,
                    Patch::compute(b"", b"<script>alert(3)</script>\n\xff</pre>\n", Duration::from_secs(1)),
                )
            })
            .collect();
        let who = vec![crate::journal::record::Writer {
            pid: 5,
            comm: Some("<b>sh</b>".into()),
            ..crate::journal::record::Writer::default()
        }];
        let writers = vec![Writers { path: HOSTILE[0].to_vec(), pids: vec![5], foreign: false, who }];
        let records = [
            Record {
                version: FORMAT_VERSION,
                epoch: 1,
                pid: 5,
                body: Body::Baseline(Baseline { cwd: b"/t/<b>\xff".to_vec(), ..Baseline::default() }),
            },
            Record {
                version: FORMAT_VERSION,
                epoch: 1,
                pid: 5,
                body: Body::Sample(Sample {
                    files,
                    writers,
                    maps: MapsDelta { added: vec![b"1-2 r--p 0 00:00 0 /m<x>&\"".to_vec()], removed: vec![] },
                    ..Sample::default()
                }),
            },
            Record {
                version: FORMAT_VERSION,
                epoch: 1,
                pid: 5,
                body: Body::Mark { name: "</script><b>x".into() },
            },
        ];
        let entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Entry {
                seq: i as u64 + 1,
                time_us: 1_700_000_000_000_000 + i as u64 * 1000,
                record: Some(r),
            })
            .collect();
        let model = Model::build(&entries, None, None);
        let mut options = Options::new("/store/<i>".to_string());
        options.tz = TimeZone::UTC;
        options.command = Some("sh -c '<svg onload=alert(4)>'".into());
        write(&model, &options)
    }

    #[test]
    fn hostile_paths_and_contents_are_escaped() {
        let whole = page_of_hostile_paths();
        // The page's own script writes elements; what is left must not.
        let page = whole.replace(JS, "");
        // Only the page's own two scripts; no element from the recording.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(page.matches("</script>").count(), 2);
        for element in ["<img", "<b>", "<i>", "<svg onload", "<x>"] {
            assert!(!page.contains(element), "{element} in {page}");
        }
        assert!(page.contains("/t/&lt;b&gt;\\xff"), "the cwd is escaped, its invalid byte shown as \\xff");
        assert!(!page.contains("<b>sh"), "a writer's name is escaped");
        assert!(page.contains("&lt;svg onload=alert(4)&gt;"), "the command line is escaped");
        assert!(page.contains("+1-2 r--p 0 00:00 0 /m&lt;x&gt;&amp;&quot;"), "a map line is escaped");
        // The script's data is JSON with no raw `<`: it cannot end its element.
        let data = page.split("id=\"report-data\">").nth(1).unwrap().split("</script>").next().unwrap();
        assert!(!data.contains('<'), "{data}");
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        let paths: Vec<&str> =
            value["files"]["list"].as_array().unwrap().iter().map(|f| f["p"].as_str().unwrap()).collect();
        let expected: Vec<String> = HOSTILE.iter().map(|p| human::sanitize(p)).collect();
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "paths reach the script as text (it escapes what it draws)");
        assert!(paths.contains(&"bad\\xff\\xfe\\x1b[31m.txt"), "invalid bytes and escapes as \\xNN");
        assert!(value["diffs"][0].as_str().unwrap().contains("+<script>alert(3)</script>\n+\u{fffd}</pre>"));
        assert!(value["events"].to_string().contains("</script><b>x"), "the mark name survives as data");
        assert!(whole.contains("default-src 'none'"), "and the browser is told to load nothing");
        // No external resource: every src/href is an anchor or a data: URI.
        for attr in ["src=\"", "href=\""] {
            for rest in whole.split(attr).skip(1) {
                assert!(
                    rest.starts_with('#') || rest.starts_with("data:"),
                    "{attr}{}",
                    &rest[..40.min(rest.len())]
                );
            }
        }
    }

    #[test]
    fn ticks_are_round_and_few() {
        let clock = Clock { tz: &TimeZone::UTC };
        let t0 = 1_700_000_003_300_000; // 22:13:23.3 UTC
        let ticks = ticks(t0, t0 + 95_000_000, &clock);
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["22:13:30", "22:13:45", "22:14:00", "22:14:15", "22:14:30", "22:14:45"]);
        assert_eq!(nice_ceiling(73.0), 100.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
