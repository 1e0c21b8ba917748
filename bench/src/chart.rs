//! The results as an SVG chart for the README: p50 scrape latency per source against hub size (log-log),
//! beside the raw-SQL floor and django-kobo-exporter's published figures. Written by hand, not with
//! plotters: plotters needs a font backend to lay out text even for SVG, and the chart is a few dozen
//! elements.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde_json::Value;

use crate::report::{Row, count};
use crate::{Context, Result, Scenario, Source};

/// django-kobo-exporter's published p50 scrape latency, ms, at 1,000 workers and 1,000,000 tasks on this
/// machine kind (2 CPUs), as quoted in README.md ("What the numbers say"). Its metrics are the six of the
/// "reference six" rows.
pub const PUBLISHED: [(Source, f64); 3] = [
    (Source::Sqlite, 84.0),
    (Source::Postgres, 114.0),
    (Source::Mysql, 100.0),
];
/// The hub size of [`PUBLISHED`], in workers.
const PUBLISHED_WORKERS: u32 = 1_000;

/// What the chart needs of one row of results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub source: Source,
    pub scenario: Scenario,
    pub workers: u32,
    pub tasks: u32,
    /// NaN for a row without scrapes (left out of the chart).
    pub p50_ms: f64,
    pub floor_p50_ms: Option<f64>,
}

impl From<&Row> for Point {
    fn from(row: &Row) -> Point {
        Point {
            source: row.source,
            scenario: row.scenario,
            workers: row.size.workers,
            tasks: row.size.tasks,
            p50_ms: row.p50_ms,
            floor_p50_ms: row.floor_p50_ms,
        }
    }
}

impl Point {
    /// One row as `Row::json` writes it (its `source`, `scenario`, `workers`, `tasks`, `p50_ms`,
    /// `floor_p50_ms`; a NaN is written as null).
    pub fn from_json(row: &Value) -> Result<Point> {
        let text = |key: &str| row[key].as_str().context(format!("no {key:?} string"));
        let whole = |key: &str| {
            row[key]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .context(format!("no {key:?} count"))
        };
        let number = |key: &str| match &row[key] {
            Value::Null => Ok(None),
            value => value
                .as_f64()
                .map(Some)
                .context(format!("{key:?} is not a number")),
        };
        let name = text("source")?;
        let source = Source::value_variants()
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .context(format!("unknown source {name:?}"))?;
        let key = text("scenario")?;
        let scenario = [Scenario::Reference, Scenario::Full, Scenario::FullRefresh]
            .into_iter()
            .find(|s| s.key() == key)
            .context(format!("unknown scenario {key:?}"))?;
        Ok(Point {
            source,
            scenario,
            workers: whole("workers")?,
            tasks: whole("tasks")?,
            p50_ms: number("p50_ms")?.unwrap_or(f64::NAN),
            floor_p50_ms: number("floor_p50_ms")?,
        })
    }
}

/// The subtitle: commit, date and CPUs of a run's `environment` (as `report::write` records it).
pub fn caption(environment: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(commit) = environment["commit"].as_str() {
        parts.push(format!("commit {commit}"));
    }
    if let Some(date) = environment["date_utc"].as_str() {
        parts.push(format!("{date} UTC"));
    }
    if let Some(cpus) = environment["cpus"].as_u64() {
        parts.push(format!("{cpus} CPUs"));
    }
    parts.join(", ")
}

/// `--chart-from`: reads a results.json and writes `out/chart.svg`; returns its path.
pub fn write_from(json: &Path, out: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(json).context(format!("reading {}", json.display()))?;
    let document: Value =
        serde_json::from_str(&text).context(format!("parsing {}", json.display()))?;
    let rows = document["rows"]
        .as_array()
        .context(format!("{}: no \"rows\" array", json.display()))?;
    let points = rows
        .iter()
        .enumerate()
        .map(|(i, row)| Point::from_json(row).context(format!("{}: row {}", json.display(), i + 1)))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).context(format!("creating {}", out.display()))?;
    let path = out.join("chart.svg");
    let chart = svg(&points, &caption(&document["environment"]));
    std::fs::write(&path, chart).context(format!("writing {}", path.display()))?;
    Ok(path)
}

/// The sources' colours (Okabe-Ito: told apart with colour blindness too).
fn colour(source: Source) -> &'static str {
    match source {
        Source::Sqlite => "#0072b2",
        Source::Postgres => "#009e73",
        Source::Mysql => "#d55e00",
        Source::Xmlrpc => "#cc79a7",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A tick label: 0.01, 0.5, 20, 1,000.
fn number(v: f64) -> String {
    if v < 1.0 {
        let decimals = (-v.log10() - 1e-9).ceil() as usize;
        return format!("{v:.decimals$}");
    }
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A log scale from decades `lo..hi` (log10) onto pixels `a..b`.
struct Scale(f64, f64, f64, f64);

impl Scale {
    fn at(&self, v: f64) -> f64 {
        let Scale(lo, hi, a, b) = *self;
        a + (v.log10() - lo) / (hi - lo) * (b - a)
    }
}

/// The points of one line: (source, scenario), one per hub size in workers (the largest task count).
fn series(points: &[Point], source: Source, scenario: Scenario) -> Vec<Point> {
    let mut line: Vec<Point> = points
        .iter()
        .filter(|p| p.source == source && p.scenario == scenario)
        .filter(|p| p.p50_ms.is_finite() && p.p50_ms > 0.0)
        .copied()
        .collect();
    line.sort_by_key(|p| (p.workers, std::cmp::Reverse(p.tasks)));
    line.dedup_by_key(|p| p.workers);
    line
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
/// The plot area: left, right, top, bottom.
const PLOT: (f64, f64, f64, f64) = (70.0, 565.0, 64.0, 405.0);
const SOURCES: [Source; 4] = [
    Source::Sqlite,
    Source::Postgres,
    Source::Mysql,
    Source::Xmlrpc,
];
/// A kind of line: scenario, CSS class, stroke width, dashes, marker radius.
type Line = (Scenario, &'static str, f64, &'static str, f64);
const LINES: [Line; 2] = [
    (Scenario::Full, "full", 2.4, "none", 3.5),
    (Scenario::Reference, "reference", 1.4, "1.5 3", 2.2),
];
/// The floor's line: width and dashes.
const FLOOR: (f64, &str) = (1.4, "6 4");

fn polyline(class: &str, colour: &str, at: &[(f64, f64)], (width, dash): (f64, &str)) -> String {
    let at: Vec<String> = at.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!(
        r#"<polyline class="{class}" points="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}" stroke-linecap="round" stroke-linejoin="round"/>
"#,
        at.join(" ")
    )
}

/// A hollow diamond centred on (x, y).
fn diamond(class: &str, x: f64, y: f64, colour: &str) -> String {
    format!(
        r##"<path class="{class}" d="M{x:.1},{:.1} l5,5 l-5,5 l-5,-5 z" fill="#fff" stroke="{colour}" stroke-width="1.8"/>"##,
        y - 5.0
    )
}

/// A legend's line, from (0, 0).
fn swatch(colour: &str, (width, dash): (f64, &str)) -> String {
    format!(
        r#"<line x2="22" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}" stroke-linecap="round"/>"#
    )
}

/// The chart: one line per source and scenario (full set with tasks cached; reference six), the full set's
/// floor dashed, the published figures as hollow diamonds; `caption` is the subtitle.
pub fn svg(points: &[Point], caption: &str) -> String {
    let (left, right, top, bottom) = PLOT;
    let lines: Vec<(Source, Line, Vec<Point>)> = LINES
        .iter()
        .flat_map(|line| SOURCES.map(|s| (s, *line, series(points, s, line.0))))
        .filter(|(_, _, line)| !line.is_empty())
        .collect();
    let floor = |p: &Point| {
        let full = p.scenario == Scenario::Full;
        p.floor_p50_ms.filter(|f| full && f.is_finite() && *f > 0.0)
    };
    let plotted: Vec<&Point> = lines.iter().flat_map(|l| &l.2).collect();
    let range = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)))
    };
    let workers = plotted.iter().map(|p| f64::from(p.workers));
    let (x_min, x_max) = range(&mut workers.chain([f64::from(PUBLISHED_WORKERS)]));
    let values = plotted
        .iter()
        .flat_map(|p| [Some(p.p50_ms), floor(p)])
        .flatten();
    let (y_min, y_max) = range(&mut values.chain(PUBLISHED.map(|p| p.1)).chain([0.1, 1.0]));
    let x_lo = x_min.log10().floor();
    let x_hi = x_max.log10().ceil().max(x_lo + 1.0);
    let y_lo = (y_min / 1.05).log10().floor();
    let y_hi = (y_max * 1.05).log10().ceil();
    // A fifth of a decade inside the frame either side, so that the end points are not on it.
    let x = Scale(x_lo - 0.2, x_hi + 0.2, left, right);
    let y = Scale(y_lo, y_hi, bottom, top);
    let mut out = format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="#222">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{left}" y="26" font-size="17" font-weight="bold">kobo-bench: scrape p50 against hub size</text>
<text x="{left}" y="46" fill="#555">{}</text>
<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>
<text x="{}" y="{}" text-anchor="middle">hub size, workers (log scale)</text>
<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">p50 scrape latency, ms (log scale)</text>
"##,
        escape(caption),
        right - left,
        bottom - top,
        (left + right) / 2.0,
        bottom + 50.0,
        (top + bottom) / 2.0
    );
    // Gridlines: p50 at 1, 2 and 5 of each decade (decades darker), hub sizes at decades and where measured.
    for e in y_lo as i32..=y_hi as i32 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v.log10() > y_hi + 1e-9 {
                continue;
            }
            let py = y.at(v);
            let (line, label) = if m == 1.0 {
                ("#bbb", "#222")
            } else {
                ("#e6e6e6", "#777")
            };
            let _ = writeln!(
                out,
                r##"<line x1="{left}" y1="{py:.1}" x2="{right}" y2="{py:.1}" stroke="{line}"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="{label}">{}</text>"##,
                left - 6.0,
                py + 4.0,
                number(v)
            );
        }
    }
    let mut ticks: Vec<(u32, Option<u32>)> = (x_lo as u32..=x_hi as u32)
        .map(|e| (10u32.pow(e), None))
        .chain(plotted.iter().map(|p| (p.workers, Some(p.tasks))))
        .collect();
    ticks.sort_by_key(|&(w, tasks)| (w, std::cmp::Reverse(tasks)));
    ticks.dedup_by_key(|t| t.0);
    for (workers, tasks) in ticks {
        let px = x.at(f64::from(workers));
        let tasks = tasks.map_or(String::new(), |n| format!("{} tasks", count(n)));
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}" stroke="#bbb"/><text x="{px:.1}" y="{}" text-anchor="middle" font-size="11">{}<tspan x="{px:.1}" dy="13" font-size="10" fill="#777">{tasks}</tspan></text>"##,
            bottom + 16.0,
            number(f64::from(workers))
        );
    }
    for (source, (_, class, width, dash, radius), line) in &lines {
        let (name, colour) = (source.name(), colour(*source));
        let at = |p: &Point, ms: f64| (x.at(f64::from(p.workers)), y.at(ms));
        let floors: Vec<_> = line.iter().filter_map(|p| Some(at(p, floor(p)?))).collect();
        if !floors.is_empty() {
            out += &polyline(&format!("floor {name}"), colour, &floors, FLOOR);
        }
        let p50s: Vec<_> = line.iter().map(|p| at(p, p.p50_ms)).collect();
        out += &polyline(&format!("{class} {name}"), colour, &p50s, (*width, dash));
        for (px, py) in p50s {
            let _ = writeln!(
                out,
                r#"<circle class="marker {class} {name}" cx="{px:.1}" cy="{py:.1}" r="{radius}" fill="{colour}"/>"#
            );
        }
    }
    // Published figures, set a little apart sideways (84, 100 and 114 ms nearly coincide).
    for (i, (source, ms)) in PUBLISHED.iter().enumerate() {
        let px = x.at(f64::from(PUBLISHED_WORKERS)) + (i as f64 - 1.0) * 9.0;
        let class = format!("published {}", source.name());
        out += &diamond(&class, px, y.at(*ms), colour(*source));
        out.push('\n');
    }
    // The legend, right of the plot: the sources' colours, then what each kind of line is.
    let sources = SOURCES
        .into_iter()
        .filter(|s| lines.iter().any(|l| l.0 == *s));
    let mut keys: Vec<(String, &str, &str)> = sources
        .map(|s| (swatch(colour(s), (6.0, "none")), s.name(), ""))
        .collect();
    let gap_after = keys.len();
    for (scenario, _, width, dash, _) in LINES {
        keys.push((swatch("#444", (width, dash)), scenario.name(), ""));
    }
    let floor_key = "(full, tasks cached)";
    keys.push((swatch("#444", FLOOR), "raw-SQL floor", floor_key));
    let published = diamond("key", 12.0, 0.0, "#444");
    keys.push((
        published,
        "django-kobo-exporter",
        "(published, 1,000 workers)",
    ));
    let mut ly = top + 6.0;
    for (i, (swatch, label, second)) in keys.iter().enumerate() {
        ly += if i == gap_after { 10.0 } else { 0.0 };
        let _ = writeln!(
            out,
            r##"<g transform="translate({} {ly})">{swatch}<text x="30" y="4">{label}<tspan x="30" dy="14" fill="#777">{second}</tspan></text></g>"##,
            right + 20.0
        );
        ly += if second.is_empty() { 20.0 } else { 34.0 };
    }
    out + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;
    use quick_xml::XmlVersion::Implicit1_0;
    use quick_xml::escape::resolve_predefined_entity;
    use quick_xml::events::Event;

    use super::*;

    /// An element's name and attributes.
    type Element = (String, HashMap<String, String>);

    /// The elements of `svg` in order, and its text; panics where it is not well-formed XML.
    fn parse(svg: &str) -> (Vec<Element>, String) {
        let mut reader = quick_xml::Reader::from_str(svg);
        let (mut elements, mut text, mut depth) = (Vec::new(), String::new(), 0);
        loop {
            let event = reader.read_event().expect("well-formed XML");
            if let Event::Start(e) | Event::Empty(e) = &event {
                let attrs = e.attributes().map(|a| {
                    let a = a.expect("an attribute");
                    let value = a.normalized_value(Implicit1_0).expect("a value");
                    (a.key.as_ref().to_owned(), value.into())
                });
                let name = e.name().as_ref().to_owned();
                elements.push((name, attrs.collect()));
            }
            match event {
                Event::Start(_) => depth += 1,
                Event::End(_) => depth -= 1,
                Event::Text(t) => text.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => {
                    text.push_str(resolve_predefined_entity(&r.xml10_content()).expect("an entity"))
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closed");
        (elements, text)
    }

    /// The elements with this name whose class is `class`.
    fn with_class<'a>(elements: &'a [Element], name: &str, class: &str) -> Vec<&'a Element> {
        elements
            .iter()
            .filter(|(n, attrs)| n == name && attrs.get("class").map(String::as_str) == Some(class))
            .collect()
    }

    /// A polyline's points.
    fn coords((_, attrs): &Element) -> Vec<(f64, f64)> {
        attrs["points"]
            .split(' ')
            .map(|xy| xy.split_once(',').expect("x,y"))
            .map(|(x, y)| (x.parse().expect("x"), y.parse().expect("y")))
            .collect()
    }

    fn point(source: Source, scenario: Scenario, workers: u32, tasks: u32, p50: f64) -> Point {
        let floor = (source != Source::Xmlrpc).then_some(p50 / 3.0);
        Point {
            source,
            scenario,
            workers,
            tasks,
            p50_ms: p50,
            floor_p50_ms: floor,
        }
    }

    fn sample() -> Vec<Point> {
        use Scenario::{Full, FullRefresh, Reference};
        use Source::{Postgres, Sqlite, Xmlrpc};
        vec![
            point(Sqlite, Full, 10_000, 1_000_000, 90.0),
            point(Sqlite, Full, 10, 1_000, 0.5),
            point(Sqlite, Full, 1_000, 1_000, 5.0),
            point(Sqlite, Full, 1_000, 1_000_000, 8.0),
            point(Sqlite, Reference, 10, 1_000, 0.4),
            point(Sqlite, Reference, 1_000, 1_000_000, 6.0),
            point(Sqlite, FullRefresh, 1_000, 1_000_000, 40.0),
            point(Postgres, Full, 10, 1_000, 0.7),
            point(Postgres, Full, 1_000, 1_000_000, 12.0),
            point(Xmlrpc, Full, 1_000, 1_000_000, 65.0),
            point(Xmlrpc, Full, 10, 1_000, f64::NAN),
        ]
    }

    #[test]
    fn one_line_per_source_and_scenario_and_a_floor_per_database() {
        let (elements, _) = parse(&svg(&sample(), "test"));
        let polylines = elements.iter().filter(|e| e.0 == "polyline").count();
        assert_eq!(
            polylines,
            4 + 2,
            "full x3, reference sqlite, floors of sqlite and postgres"
        );
        for class in [
            "full sqlite",
            "reference sqlite",
            "full postgres",
            "full xmlrpc",
        ] {
            assert_eq!(with_class(&elements, "polyline", class).len(), 1, "{class}");
        }
        for class in ["floor sqlite", "floor postgres"] {
            assert_eq!(with_class(&elements, "polyline", class).len(), 1, "{class}");
        }
        assert!(with_class(&elements, "polyline", "reference postgres").is_empty());
        assert!(with_class(&elements, "polyline", "floor xmlrpc").is_empty());
        assert_eq!(
            coords(with_class(&elements, "polyline", "full sqlite")[0]).len(),
            3
        );
        assert_eq!(
            coords(with_class(&elements, "polyline", "full xmlrpc")[0]).len(),
            1,
            "NaN left out"
        );
        let at_1000: Vec<u32> = series(&sample(), Source::Sqlite, Scenario::Full)
            .iter()
            .filter(|p| p.workers == 1_000)
            .map(|p| p.tasks)
            .collect();
        assert_eq!(at_1000, [1_000_000], "the largest task count of a size");
    }

    #[test]
    fn points_go_left_to_right_and_a_larger_p50_is_higher() {
        let (elements, _) = parse(&svg(&sample(), "test"));
        for line in elements.iter().filter(|e| e.0 == "polyline") {
            let xs: Vec<f64> = coords(line).iter().map(|c| c.0).collect();
            assert!(
                xs.windows(2).all(|w| w[0] < w[1]),
                "{:?}: {xs:?}",
                line.1["class"]
            );
        }
        // SQLite's p50 grows with the workers: 0.5, 8, 90 ms.
        let sqlite = coords(with_class(&elements, "polyline", "full sqlite")[0]);
        assert!(sqlite.windows(2).all(|w| w[0].1 > w[1].1), "{sqlite:?}");
        // At 1,000 workers PostgreSQL's 12 ms is above SQLite's 8 ms, and the floor below both.
        let postgres = coords(with_class(&elements, "polyline", "full postgres")[0]);
        assert_eq!(postgres[1].0, sqlite[1].0);
        assert!(postgres[1].1 < sqlite[1].1);
        let floor = coords(with_class(&elements, "polyline", "floor sqlite")[0]);
        assert!(floor[1].1 > sqlite[1].1);
    }

    #[test]
    fn published_figures_are_hollow_markers_in_the_sources_colours() {
        let (elements, text) = parse(&svg(&sample(), "test"));
        let marker = |source: Source| {
            let found = with_class(&elements, "path", &format!("published {}", source.name()));
            assert_eq!(found.len(), 1, "{source:?}");
            let attrs = &found[0].1;
            assert_eq!(attrs["fill"], "#fff");
            assert_eq!(attrs["stroke"], colour(source));
            // The diamond's top: "M{x},{y} ...".
            let (x, y) = attrs["d"][1..]
                .split_once(' ')
                .expect("d")
                .0
                .split_once(',')
                .expect("x,y");
            (x.parse::<f64>().expect("x"), y.parse::<f64>().expect("y"))
        };
        let (sqlite, postgres, mariadb) = (
            marker(Source::Sqlite),
            marker(Source::Postgres),
            marker(Source::Mysql),
        );
        // 114 ms above 100 above 84, all about x = 1,000 workers where the measured 1,000-worker points are.
        assert!(postgres.1 < mariadb.1 && mariadb.1 < sqlite.1);
        let measured = coords(with_class(&elements, "polyline", "full sqlite")[0])[1].0;
        assert!((postgres.0 - measured).abs() < 10.0 && (sqlite.0 - measured).abs() < 10.0);
        assert!(text.contains("django-kobo-exporter(published"), "{text}");
    }

    #[test]
    fn text_is_escaped() {
        let caption = r#"commit <b>&"'"#;
        let chart = svg(&sample(), caption);
        assert!(!chart.contains("<b>"));
        let (_, text) = parse(&chart);
        assert!(text.contains(caption), "{text}");
        assert!(text.contains("kobo-bench: scrape p50 against hub size"));
        assert!(text.contains("p50 scrape latency, ms"));
    }

    #[test]
    fn tick_labels() {
        let labels: Vec<String> = [0.001, 0.02, 0.1, 0.5, 5.0, 1_000.0, 10_000.0]
            .map(number)
            .into();
        assert_eq!(
            labels,
            ["0.001", "0.02", "0.1", "0.5", "5", "1,000", "10,000"]
        );
    }

    #[test]
    fn json_errors_name_the_file_and_row() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let json = dir.path().join("results.json");
        let row = r#"{"source": "sqlite", "scenario": "full", "workers": 10, "tasks": 1000, "p50_ms": null, "floor_p50_ms": 0.1}"#;
        let bad = row.replace("sqlite", "oracle");
        std::fs::write(&json, format!(r#"{{"rows": [{row}, {bad}]}}"#)).expect("writing");
        let error = format!(
            "{:#}",
            write_from(&json, dir.path()).expect_err("an unknown source")
        );
        assert!(
            error.contains("results.json: row 2: unknown source \"oracle\""),
            "{error}"
        );
        std::fs::write(&json, "[").expect("writing");
        let error = format!("{:#}", write_from(&json, dir.path()).expect_err("not JSON"));
        assert!(error.contains("parsing"), "{error}");
    }

    #[test]
    fn chart_from_the_committed_results_has_four_sources() {
        let json = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/results/2026-11-29-all-sizes-a537f0c.json"
        );
        let out = tempfile::tempdir().expect("a temporary directory");
        let out_arg = out.path().to_str().expect("a UTF-8 path");
        let args =
            crate::Args::try_parse_from(["kobo-bench", "--chart-from", json, "--out", out_arg])
                .expect("the flags");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        assert!(runtime.block_on(crate::run(&args)).expect("the chart"));
        let chart = std::fs::read_to_string(out.path().join("chart.svg")).expect("chart.svg");
        let (elements, text) = parse(&chart);
        for source in SOURCES {
            for class in ["full", "reference"] {
                let line = with_class(&elements, "polyline", &format!("{class} {}", source.name()));
                assert_eq!(line.len(), 1, "{class} {source:?}");
                assert_eq!(coords(line[0]).len(), 3, "10, 1,000 and 10,000 workers");
            }
        }
        let floors = elements
            .iter()
            .filter(|e| e.1.get("class").is_some_and(|c| c.starts_with("floor ")));
        assert_eq!(floors.count(), 3, "no floor for XML-RPC");
        assert!(
            text.contains("commit a537f0c, 2026-11-29 18:37 UTC, 2 CPUs"),
            "{text}"
        );
    }
}
