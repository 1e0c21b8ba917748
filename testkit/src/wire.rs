//! kobo's XML-RPC wire format, for test hubs and benchmarks: Python's `xmlrpc.client` marshaller (what a
//! kobo hub answers with, byte for byte: `tests/it/xmlrpc/` checks it against real captures) and a worker as
//! kobo's `Worker.export()` gives it ([`Export`]).
//!
//! ```
//! use kobo_testkit::wire::{py, utc, Export};
//!
//! let export = Export {
//!     id: 1,
//!     name: "worker-1.example.com".into(),
//!     arches: vec![(1, "x86_64".into(), "x86_64".into())],
//!     channels: vec![(1, "default".into())],
//!     enabled: true,
//!     max_load: 1,
//!     ready: true,
//!     task_count: 0,
//!     current_load: 0,
//!     last_seen: Some(utc(1_700_000_000)),
//! };
//! let body = py::response(&export.py());
//! assert!(body.starts_with("<?xml version='1.0'?>\n<methodResponse>"));
//! assert!(body.contains("<name>last_seen</name>\n<value><string>2023-11-14T22:13:20Z</string></value>"));
//! ```

/// Python's `xmlrpc.client` marshaller (what kobo's hub answers with): `Marshaller.dump` and `dumps` for
/// the values kobo exports.
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
        format!(
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n{dumped}</param>\n</params>\n</methodResponse>\n"
        )
    }

    /// `xmlrpc.client.dumps((v,), methodresponse=True)`.
    pub fn response(v: &Py) -> String {
        response_of(&value(v))
    }

    /// `xmlrpc.client.dumps(Fault(code, string))`.
    pub fn fault(code: i64, string: &str) -> String {
        let fault = value(&Py::Dict(vec![
            ("faultCode", Py::Int(code)),
            ("faultString", Py::Str(string.into())),
        ]));
        format!(
            "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n{fault}</fault>\n</methodResponse>\n"
        )
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

/// A worker as `Worker.export()` gives it (what `client.get_worker_info` answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `hub_worker.id`.
    pub id: i64,
    /// The worker's name (its host name).
    pub name: String,
    /// (id, name, pretty_name), ordered by name.
    pub arches: Vec<(i64, String, String)>,
    /// (id, name), ordered by id.
    pub channels: Vec<(i64, String)>,
    /// kobo's cached columns, as in `hub_worker`.
    pub enabled: bool,
    /// The worker's `max_load`.
    pub max_load: i64,
    /// The worker's cached `ready`.
    pub ready: bool,
    /// The worker's cached `task_count`.
    pub task_count: i64,
    /// The worker's cached `current_load`.
    pub current_load: i64,
    /// `YYYY-MM-DDTHH:MM:SSZ`, or `None` for never seen.
    pub last_seen: Option<String>,
}

impl Export {
    /// The export as the Python dict kobo marshals, keys in kobo's order (`version` is always `None`).
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
