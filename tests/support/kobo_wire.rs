//! kobo's wire format for the test hubs: Python's xmlrpc.client marshaller (what kobo's hub answers with,
//! byte for byte) and the fixture workers as `Worker.export()` gives them. Shared by tests/xmlrpc.rs and the
//! fault tests' hub (tests/support/hub.rs).
#![allow(dead_code)]

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------------------
// Python's xmlrpc.client marshaller (what kobo's hub answers with), for what the captures do not hold.

pub mod py {
    /// A Python value as kobo exports it.
    #[derive(Debug, Clone)]
    pub enum Py {
        Int(i64),
        Bool(bool),
        Str(String),
        None,
        List(Vec<Py>),
        Dict(Vec<(&'static str, Py)>),
        /// A dict whose keys are not known in advance (a task's `args`).
        Map(Vec<(String, Py)>),
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// `Marshaller.dump` of one value.
    pub fn value(v: &Py) -> String {
        match v {
            Py::Int(i) => format!("<value><int>{i}</int></value>\n"),
            Py::Bool(b) => format!("<value><boolean>{}</boolean></value>\n", u8::from(*b)),
            Py::Str(s) => format!("<value><string>{}</string></value>\n", escape(s)),
            Py::None => "<value><nil/></value>".into(),
            Py::List(items) => {
                let inner: String = items.iter().map(value).collect();
                format!("<value><array><data>\n{inner}</data></array></value>\n")
            }
            Py::Dict(members) => {
                let inner: String = members.iter().map(|(k, v)| member(k, v)).collect();
                format!("<value><struct>\n{inner}</struct></value>\n")
            }
            Py::Map(members) => {
                let inner: String = members.iter().map(|(k, v)| member(k, v)).collect();
                format!("<value><struct>\n{inner}</struct></value>\n")
            }
        }
    }

    fn member(name: &str, v: &Py) -> String {
        format!(
            "<member>\n<name>{}</name>\n{}</member>\n",
            escape(name),
            value(v)
        )
    }

    /// `xmlrpc.client.dumps((value,), methodresponse=True)` of an already dumped value.
    pub fn response_of(dumped: &str) -> String {
        format!("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n{dumped}</param>\n</params>\n</methodResponse>\n")
    }

    pub fn response(v: &Py) -> String {
        response_of(&value(v))
    }

    /// `xmlrpc.client.dumps(Fault(code, string))`.
    pub fn fault(code: i64, string: &str) -> String {
        let fault = value(&Py::Dict(vec![
            ("faultCode", Py::Int(code)),
            ("faultString", Py::Str(string.into())),
        ]));
        format!("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n{fault}</fault>\n</methodResponse>\n")
    }

    /// kobo's `system.multicall` result from already dumped items: each `[result]` (dumped as an array
    /// around the result's dump) or a fault struct.
    pub fn multicall(items: &[Result<String, (i64, String)>]) -> String {
        let inner: String = items
            .iter()
            .map(|item| match item {
                Ok(dumped) => format!("<value><array><data>\n{dumped}</data></array></value>\n"),
                Err((code, string)) => value(&Py::Dict(vec![
                    ("faultCode", Py::Int(*code)),
                    ("faultString", Py::Str(string.clone())),
                ])),
            })
            .collect();
        response_of(&format!(
            "<value><array><data>\n{inner}</data></array></value>\n"
        ))
    }
}

pub use py::Py;

/// A worker as `Worker.export()` gives it.
#[derive(Debug, Clone)]
pub struct Export {
    pub id: i64,
    pub name: String,
    /// (id, name, pretty_name), ordered by name.
    pub arches: Vec<(i64, String, String)>,
    /// (id, name), ordered by id.
    pub channels: Vec<(i64, String)>,
    pub enabled: bool,
    pub max_load: i64,
    pub ready: bool,
    pub task_count: i64,
    pub current_load: i64,
    /// `YYYY-MM-DDTHH:MM:SSZ`, or `None` for never seen.
    pub last_seen: Option<String>,
}

impl Export {
    pub fn py(&self) -> Py {
        Py::Dict(vec![
            ("id", Py::Int(self.id)),
            ("name", Py::Str(self.name.clone())),
            (
                "arches",
                Py::List(
                    self.arches
                        .iter()
                        .map(|(id, name, pretty)| {
                            Py::Dict(vec![
                                ("id", Py::Int(*id)),
                                ("name", Py::Str(name.clone())),
                                ("pretty_name", Py::Str(pretty.clone())),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "channels",
                Py::List(
                    self.channels
                        .iter()
                        .map(|(id, name)| {
                            Py::Dict(vec![("id", Py::Int(*id)), ("name", Py::Str(name.clone()))])
                        })
                        .collect(),
                ),
            ),
            ("enabled", Py::Bool(self.enabled)),
            ("max_load", Py::Int(self.max_load)),
            ("ready", Py::Bool(self.ready)),
            ("task_count", Py::Int(self.task_count)),
            ("current_load", Py::Int(self.current_load)),
            (
                "last_seen",
                self.last_seen.clone().map_or(Py::None, Py::Str),
            ),
            ("version", Py::None),
        ])
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (UTC).
pub fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Every fixture worker's export, from the fixture database and `fixture-last-seen.tsv`.
pub fn fixture_exports() -> Vec<Export> {
    let (_dir, path) = crate::common::fixture_sqlite();
    let conn = rusqlite::Connection::open(&path).expect("open");
    let tsv = crate::common::read_shared("fixture-last-seen.tsv");
    let last_seen: BTreeMap<String, Option<String>> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            let when = (fields[2] != "-").then(|| utc(fields[2].parse().expect("mtime")));
            (fields[0].to_string(), when)
        })
        .collect();
    let mut workers = conn
        .prepare("SELECT id, name, enabled, max_load, ready, task_count, current_load FROM hub_worker ORDER BY id")
        .expect("prepare");
    let mut exports: Vec<Export> = workers
        .query_map([], |r| {
            Ok(Export {
                id: r.get(0)?,
                name: r.get(1)?,
                arches: vec![],
                channels: vec![],
                enabled: r.get(2)?,
                max_load: r.get(3)?,
                ready: r.get(4)?,
                task_count: r.get(5)?,
                current_load: r.get(6)?,
                last_seen: None,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for export in &mut exports {
        export.last_seen = last_seen[&export.name].clone();
        export.arches = conn
            .prepare(
                "SELECT a.id, a.name, a.pretty_name FROM hub_worker_arches wa JOIN hub_arch a ON a.id = wa.arch_id \
                 WHERE wa.worker_id = ?1 ORDER BY a.name",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        export.channels = conn
            .prepare(
                "SELECT c.id, c.name FROM hub_worker_channels wc JOIN hub_channel c ON c.id = wc.channel_id \
                 WHERE wc.worker_id = ?1 ORDER BY c.id",
            )
            .expect("prepare")
            .query_map([export.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
    }
    exports
}
