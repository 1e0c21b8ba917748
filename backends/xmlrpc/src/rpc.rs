//! The XML-RPC layer, without HTTP: the allow-list of methods, the one function that builds method calls,
//! and the decoding of responses, faults and `system.multicall` results.
//!
//! Values are (de)serialised by `dxr` (which handles `<nil/>`, `<int>`/`<i4>`/`<i8>`, `<boolean>`, typed and
//! untyped strings, `<double>`, `<dateTime.iso8601>`, `<base64>`, structs, arrays and entities). When a
//! body is not an XML-RPC response, [`diagnose`] reads it with quick-xml to say why (syntax error and
//! where, truncation, another document such as an HTML page), since dxr reports only that it failed.

use std::collections::BTreeMap;

use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, Value};

/// Every XML-RPC method the source may call: read-only `client.*` methods and `system.multicall`. Never a
/// `worker.*` method (they need a worker's credentials and fake its last seen) nor anything that changes
/// the hub. The encoder refuses any other name, also inside a multicall.
///
/// `client.get_tasks` and `client.task_info` are called only for the task metrics
/// (a collection with `tasks` asked for).
pub const ALLOWED_METHODS: [&str; 5] = [
    "client.list_workers",
    "client.get_worker_info",
    "client.get_tasks",
    "client.task_info",
    "system.multicall",
];

/// A call the source makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// `client.list_workers(enabled)`: sorted names of the workers whose `enabled` is `enabled`.
    ListWorkers { enabled: bool },
    /// `client.get_worker_info(name)`: the worker's export, `{}` for an unknown name.
    GetWorkerInfo { name: String },
    /// `client.get_tasks(ids, states)`: flat exports of the non-archived tasks with these ids (every task
    /// when `ids` is empty) in these states. Unpaginated: with no ids, one answer holds every matching task.
    GetTasks { ids: Vec<i64>, states: Vec<i64> },
    /// `client.task_info(id)` (`flat=False`): the task's export with its worker, arch and channel as nested
    /// structs; a fault for an unknown (or archived) id.
    TaskInfo { id: i64 },
}

impl Call {
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Call::ListWorkers { .. } => "client.list_workers",
            Call::GetWorkerInfo { .. } => "client.get_worker_info",
            Call::GetTasks { .. } => "client.get_tasks",
            Call::TaskInfo { .. } => "client.task_info",
        }
    }

    fn params(&self) -> Vec<Value> {
        match self {
            Call::ListWorkers { enabled } => vec![Value::Boolean(*enabled)],
            Call::GetWorkerInfo { name } => vec![Value::String(name.clone())],
            Call::GetTasks { ids, states } => vec![
                Value::Array(ids.iter().copied().map(integer).collect()),
                Value::Array(states.iter().copied().map(integer).collect()),
            ],
            Call::TaskInfo { id } => vec![integer(*id)],
        }
    }
}

/// An integer parameter: `<i4>` when it fits in 32 bits, `<i8>` otherwise (Python's unmarshaller reads both).
fn integer(value: i64) -> Value {
    match i32::try_from(value) {
        Ok(small) => Value::Integer(small),
        Err(_) => Value::Long(value),
    }
}

/// One HTTP request's worth of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Single(Call),
    /// `system.multicall` with these calls, answered in order.
    Multicall(Vec<Call>),
}

impl Request {
    /// The method name sent at the top level.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Request::Single(call) => call.method(),
            Request::Multicall(_) => "system.multicall",
        }
    }
}

/// `method` if it is on the allow-list.
fn allowed(method: &'static str) -> Result<&'static str, String> {
    if ALLOWED_METHODS.contains(&method) {
        Ok(method)
    } else {
        Err(format!(
            "refusing to call {method}: not an allowed read-only method"
        ))
    }
}

/// The `methodCall` document for a request: the only place method calls are built.
pub(crate) fn encode(request: &Request) -> Result<String, String> {
    let (method, params) = match request {
        Request::Single(call) => (allowed(call.method())?, call.params()),
        Request::Multicall(calls) => {
            let entries = calls
                .iter()
                .map(|call| {
                    let mut entry = BTreeMap::new();
                    entry.insert(
                        "methodName".to_string(),
                        Value::String(allowed(call.method())?.to_string()),
                    );
                    entry.insert("params".to_string(), Value::Array(call.params()));
                    Ok(Value::Struct(entry))
                })
                .collect::<Result<Vec<Value>, String>>()?;
            (allowed("system.multicall")?, vec![Value::Array(entries)])
        }
    };
    let call = MethodCall {
        name: method.into(),
        params,
    };
    let xml = call
        .to_xml()
        .map_err(|e| format!("cannot encode the {method} call: {e}"))?;
    Ok(format!("<?xml version=\"1.0\"?>\n{xml}"))
}

/// A decoded response: the value, or the fault the hub answered with.
pub(crate) fn decode(body: &str) -> Result<Result<Value, Fault>, String> {
    if let Ok(response) = MethodResponse::from_xml(body) {
        return Ok(Ok(response.value));
    }
    if let Ok(response) = FaultResponse::from_xml(body) {
        return Ok(Err(response.fault));
    }
    Err(diagnose(body))
}

/// Why one call inside a multicall gave no value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemError {
    Fault(Fault),
    /// Neither `[value]` nor a fault struct.
    Malformed(String),
}

/// Splits a `system.multicall` result into one result per call: each element is `[value]` or a fault
/// struct `{faultCode, faultString}`. The error says how the whole result is wrong (not an array, or not
/// one element per call).
pub(crate) fn multicall_results(
    value: Value,
    calls: usize,
) -> Result<Vec<Result<Value, ItemError>>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "the system.multicall result is {}, not an array",
            kind(&value)
        ));
    };
    if items.len() != calls {
        return Err(format!(
            "system.multicall answered {} results for {calls} calls",
            items.len()
        ));
    }
    Ok(items.into_iter().map(multicall_item).collect())
}

/// One result of a `system.multicall`: `[value]`, or a fault struct.
pub(crate) fn multicall_item(item: Value) -> Result<Value, ItemError> {
    match item {
        Value::Array(mut values) if values.len() == 1 => match values.pop() {
            Some(value) => Ok(value),
            None => Err(ItemError::Malformed("an empty array".into())),
        },
        Value::Array(values) => Err(ItemError::Malformed(format!(
            "an array of {} values instead of one",
            values.len()
        ))),
        Value::Struct(members) => {
            let code = match members.get("faultCode") {
                Some(Value::Integer(code)) => Some(*code),
                Some(Value::Long(code)) => i32::try_from(*code).ok(),
                _ => None,
            };
            let string = match members.get("faultString") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            match (code, string) {
                (Some(code), Some(string)) => Err(ItemError::Fault(Fault::new(code, string))),
                _ => Err(ItemError::Malformed(
                    "a struct that is not a fault (no integer faultCode and string faultString)"
                        .into(),
                )),
            }
        }
        other => Err(ItemError::Malformed(format!(
            "{} instead of [value] or a fault",
            kind(&other)
        ))),
    }
}

/// The XML-RPC type of a value, in words, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) | Value::Long(_) => "an integer",
        Value::Boolean(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Double(_) => "a double",
        Value::DateTime(_) => "a dateTime.iso8601",
        Value::Base64(_) => "base64 data",
        Value::Struct(_) => "a struct",
        Value::Array(_) => "an array",
        Value::Nil => "nil",
        _ => "a value of an unknown type",
    }
}

/// The fault string, shortened for a message: a Python traceback (what a hub with `DEBUG = True` sends) is
/// reduced to its exception line, anything else to its first line; at most 300 characters.
pub(crate) fn summarise_fault(string: &str) -> String {
    let mut lines = string.lines();
    let first = lines.next().unwrap_or_default().trim();
    let line = if first.starts_with("Traceback (most recent call last)") {
        // The exception line is the first one after the traceback that is not indented.
        lines
            .find(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))
            .unwrap_or(first)
    } else {
        first
    };
    shorten(line, 300)
}

/// At most `max` characters of `text`, with `...` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Why `body` is not an XML-RPC response, as precisely as quick-xml can tell.
pub(crate) fn diagnose(body: &str) -> String {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    use quick_xml::events::Event;

    if body.trim().is_empty() {
        return "the body is empty".into();
    }
    // HTML is seldom well-formed XML: say what it is rather than where it breaks the XML rules.
    let start: String = body
        .trim_start()
        .chars()
        .take(14)
        .collect::<String>()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        return "the body is an HTML page, not an XML-RPC <methodResponse>".into();
    }
    let mut reader = quick_xml::Reader::from_str(body);
    let mut open: Vec<String> = Vec::new();
    let mut root: Option<String> = None;
    loop {
        match reader.read_event() {
            Err(e) => {
                let position = reader.error_position();
                // Unclosed constructs and missing end tags are what a body cut off mid-way gives.
                let truncated = match &e {
                    quick_xml::Error::Syntax(syntax) => {
                        !matches!(syntax, SyntaxError::InvalidBangMarkup)
                    }
                    quick_xml::Error::IllFormed(IllFormedError::MissingEndTag(_)) => true,
                    _ => false,
                };
                return if truncated {
                    format!(
                        "the XML ends early at byte {position} of {} (truncated?): {e}",
                        body.len()
                    )
                } else {
                    format!("not well-formed XML at byte {position}: {e}")
                };
            }
            Ok(Event::Start(start)) => {
                let name = start.name().as_ref().to_string();
                root.get_or_insert_with(|| name.clone());
                open.push(name);
            }
            Ok(Event::Empty(start)) => {
                root.get_or_insert_with(|| start.name().as_ref().to_string());
            }
            Ok(Event::End(_)) => {
                open.pop();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
        }
    }
    match (root, open.last()) {
        (None, _) => "the body holds no XML element".into(),
        (Some(_), Some(inner)) => format!("the XML ends early, inside <{inner}> (truncated?)"),
        (Some(root), None) if root != "methodResponse" => {
            format!("the document is <{root}>, not an XML-RPC <methodResponse>")
        }
        (Some(_), None) => {
            "a <methodResponse> that is not valid XML-RPC (unexpected elements or values)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><string>worker-0001.example.com</string></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n";

    #[test]
    fn calls_are_encoded_with_only_allowed_methods() {
        let single = encode(&Request::Single(Call::ListWorkers { enabled: false })).unwrap();
        assert!(
            single.contains("<methodName>client.list_workers</methodName>"),
            "{single}"
        );
        assert!(single.contains("<boolean>0</boolean>"), "{single}");
        let multi = encode(&Request::Multicall(vec![
            Call::GetWorkerInfo {
                name: "a&<b>\"é".into(),
            },
            Call::GetWorkerInfo { name: "c".into() },
        ]))
        .unwrap();
        assert!(
            multi.starts_with(
                "<?xml version=\"1.0\"?>\n<methodCall><methodName>system.multicall</methodName>"
            ),
            "{multi}"
        );
        assert!(multi.contains("a&amp;&lt;b&gt;&quot;é"), "{multi}");
        assert_eq!(multi.matches("client.get_worker_info").count(), 2);
        // The request decodes back to the same calls.
        let call =
            MethodCall::from_xml(multi.trim_start_matches("<?xml version=\"1.0\"?>\n")).unwrap();
        let Value::Array(entries) = &call.params[0] else {
            panic!("{call:?}")
        };
        let Value::Struct(first) = &entries[0] else {
            panic!()
        };
        assert_eq!(
            first["params"],
            Value::Array(vec![Value::String("a&<b>\"é".into())])
        );
        for method in ALLOWED_METHODS {
            assert!(!method.starts_with("worker."));
        }
        assert!(allowed("worker.update_worker").is_err());
        assert!(allowed("client.enable_worker").is_err());
        assert!(allowed("client.cancel_task").is_err());
        assert!(allowed("client.resubmit_task").is_err());
    }

    #[test]
    fn task_calls_are_encoded_with_integer_parameters() {
        let tasks = encode(&Request::Single(Call::GetTasks {
            ids: vec![],
            states: vec![0, 1, 2, 8],
        }))
        .unwrap();
        let call =
            MethodCall::from_xml(tasks.trim_start_matches("<?xml version=\"1.0\"?>\n")).unwrap();
        assert_eq!(call.name.as_ref(), "client.get_tasks");
        assert_eq!(
            call.params,
            [
                Value::Array(vec![]),
                Value::Array(vec![
                    Value::Integer(0),
                    Value::Integer(1),
                    Value::Integer(2),
                    Value::Integer(8)
                ])
            ]
        );
        let infos = encode(&Request::Multicall(vec![
            Call::TaskInfo { id: 2 },
            Call::TaskInfo { id: 1 << 40 },
        ]))
        .unwrap();
        assert!(infos.contains("<i4>2</i4>"), "{infos}");
        assert!(infos.contains("<i8>1099511627776</i8>"), "{infos}");
        assert_eq!(infos.matches("client.task_info").count(), 2);
    }

    #[test]
    fn responses_faults_and_multicall_results() {
        let Ok(Ok(Value::Array(names))) = decode(LIST) else {
            panic!()
        };
        assert_eq!(names, [Value::String("worker-0001.example.com".into())]);
        let fault = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>PermissionDenied: Login required.</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n";
        assert_eq!(
            decode(fault),
            Ok(Err(Fault::new(
                1,
                "PermissionDenied: Login required.".into()
            )))
        );
        let multi = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><array><data>\n<value><int>5</int></value>\n</data></array></value>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>&lt;class 'Exception'&gt;:method \"no.such\" is not supported</string></value>\n</member>\n</struct></value>\n<value><string>odd</string></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n";
        let Ok(Ok(value)) = decode(multi) else {
            panic!()
        };
        let results = multicall_results(value.clone(), 3).unwrap();
        assert_eq!(results[0], Ok(Value::Integer(5)));
        assert_eq!(
            results[1],
            Err(ItemError::Fault(Fault::new(
                1,
                "<class 'Exception'>:method \"no.such\" is not supported".into()
            )))
        );
        assert!(matches!(&results[2], Err(ItemError::Malformed(m)) if m.contains("a string")));
        assert!(
            multicall_results(value, 2)
                .unwrap_err()
                .contains("3 results for 2 calls")
        );
        assert!(
            multicall_results(Value::Nil, 1)
                .unwrap_err()
                .contains("not an array")
        );
    }

    #[test]
    fn every_value_type() {
        let body = "<?xml version='1.0'?><methodResponse><params><param><value><struct>\
            <member><name>int</name><value><int>-7</int></value></member>\
            <member><name>i4</name><value><i4>2147483647</i4></value></member>\
            <member><name>i8</name><value><i8>9007199254740993</i8></value></member>\
            <member><name>t</name><value><boolean>1</boolean></value></member>\
            <member><name>s</name><value><string>caf\u{e9} &amp; &#x263A; &lt;&gt;</string></value></member>\
            <member><name>untyped</name><value>plain</value></member>\
            <member><name>empty</name><value></value></member>\
            <member><name>d</name><value><double>-1.5</double></value></member>\
            <member><name>dt</name><value><dateTime.iso8601>20250615T15:05:04</dateTime.iso8601></value></member>\
            <member><name>nil</name><value><nil/></value></member>\
            <member><name>arr</name><value><array><data>\n</data></array></value></member>\
            <member><name>st</name><value><struct>\n</struct></value></member>\
            </struct></value></param></params></methodResponse>";
        let Ok(Ok(Value::Struct(m))) = decode(body) else {
            panic!("{:?}", decode(body))
        };
        assert_eq!(m["int"], Value::Integer(-7));
        assert_eq!(m["i4"], Value::Integer(i32::MAX));
        assert_eq!(m["i8"], Value::Long(9_007_199_254_740_993));
        assert_eq!(m["t"], Value::Boolean(true));
        assert_eq!(m["s"], Value::String("café & \u{263A} <>".into()));
        assert_eq!(m["untyped"], Value::String("plain".into()));
        assert_eq!(m["empty"], Value::String(String::new()));
        assert_eq!(m["d"], Value::Double(-1.5));
        let Value::DateTime(dt) = &m["dt"] else {
            panic!()
        };
        assert_eq!(
            (
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
            (2025, 6, 15, 15, 5, 4)
        );
        assert_eq!(m["nil"], Value::Nil);
        assert_eq!(m["arr"], Value::Array(vec![]));
        assert_eq!(m["st"], Value::Struct(BTreeMap::new()));
    }

    #[test]
    fn non_xml_rpc_bodies_are_diagnosed() {
        let html = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>x</body></html>";
        let unclosed =
            "<html><head><meta charset=utf-8><title>x</title></head><body><br></body></html>";
        assert!(decode(unclosed).unwrap_err().contains("an HTML page"));
        assert!(
            decode(html).unwrap_err().contains("an HTML page"),
            "{}",
            diagnose(html)
        );
        assert!(decode("").unwrap_err().contains("empty"));
        let truncated = &LIST[..LIST.len() - 40];
        let why = decode(truncated).unwrap_err();
        assert!(why.contains("truncated"), "{why}");
        let cut_tag = &LIST[..LIST.len() - 5];
        let why = decode(cut_tag).unwrap_err();
        assert!(
            why.contains("truncated") || why.contains("ends early"),
            "{why}"
        );
        let malformed = "<?xml version='1.0'?>\n<methodResponse><params></param></methodResponse>";
        let why = decode(malformed).unwrap_err();
        assert!(why.contains("not well-formed XML at byte"), "{why}");
        let wrong = "<methodResponse><params><param><value><bogus>1</bogus></value></param></params></methodResponse>";
        assert!(decode(wrong).unwrap_err().contains("not valid XML-RPC"));
        assert!(decode("just text").unwrap_err().contains("no XML element"));
    }

    #[test]
    fn faults_are_summarised() {
        assert_eq!(
            summarise_fault("DoesNotExist: Task matching query does not exist."),
            "DoesNotExist: Task matching query does not exist."
        );
        let traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\nkobo.hub.models.Task.DoesNotExist: Task matching query does not exist.\nFrame get in ...\n<LOCALS>\n";
        assert_eq!(
            summarise_fault(traceback),
            "kobo.hub.models.Task.DoesNotExist: Task matching query does not exist."
        );
        assert_eq!(shorten(&"é".repeat(400), 300).chars().count(), 303);
    }
}
