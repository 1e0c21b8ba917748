//! A streaming reader of XML-RPC responses: quick-xml's event reader, straight into [`dxr::Value`]s.
//!
//! dxr reads a response through quick-xml's serde deserializer, which buffers and re-dispatches every
//! element, and that took most of a scrape's time on a large hub (44-54 us a worker). This reader walks
//! the same events once and builds the same values; [`crate::rpc::decode`] falls back to dxr for
//! anything it refuses, so a body that dxr reads is never lost to it (a test holds the two equal on
//! kobo's wire captures and on generated hubs).
//!
//! It reads what XML-RPC's specification and Python's `xmlrpc.client` write: `methodResponse` with one
//! `param` or a `fault`; values untyped (a string) or `i4`, `int`, `i8`, `boolean`, `string`, `double`,
//! `dateTime.iso8601`, `base64`, `struct`, `array` and `nil`; whitespace between elements, comments and
//! processing instructions ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use dxr::{DateTime, Fault, Value};
use quick_xml::Reader;
use quick_xml::events::{BytesEnd, BytesStart, Event};

/// The response's value, or the fault it holds; the error says why the body is not one this reader
/// takes (the caller then asks dxr).
pub(crate) fn response(body: &str) -> Result<Result<Value, Fault>, String> {
    let mut reader = Reader::from_str(body);
    // Every end tag that matters is compared here (`close`, `text`, the loops): quick-xml's own check of
    // every name costs a third of the tokenizing.
    reader.config_mut().check_end_names = false;
    let mut reader = Events { reader };
    reader.open("methodResponse")?;
    let result = match reader.element()? {
        element if element.opens("params") => {
            reader.open("param")?;
            reader.open("value")?;
            let value = reader.value()?;
            reader.close("param")?;
            reader.close("params")?;
            Ok(value)
        }
        element if element.opens("fault") => {
            reader.open("value")?;
            let value = reader.value()?;
            reader.close("fault")?;
            Err(fault(value)?)
        }
        other => return Err(format!("<methodResponse> holds {other:?}")),
    };
    reader.close("methodResponse")?;
    match reader.element()? {
        Element::Eof => Ok(result),
        other => Err(format!("{other:?} after </methodResponse>")),
    }
}

/// The fault of a `<fault>`'s struct.
fn fault(value: Value) -> Result<Fault, String> {
    let Value::Struct(mut members) = value else {
        return Err("a <fault> without a struct".into());
    };
    let code = match members.remove("faultCode") {
        Some(Value::Integer(code)) => code,
        Some(Value::Long(code)) => i32::try_from(code).map_err(|e| e.to_string())?,
        _ => return Err("a fault without an integer faultCode".into()),
    };
    match members.remove("faultString") {
        Some(Value::String(string)) => Ok(Fault::new(code, string)),
        _ => Err("a fault without a string faultString".into()),
    }
}

/// What comes next among the elements (whitespace between them skipped), borrowed from the body.
#[derive(Debug)]
enum Element<'a> {
    Open(BytesStart<'a>),
    Empty(BytesStart<'a>),
    Close(BytesEnd<'a>),
    Eof,
}

impl Element<'_> {
    fn opens(&self, tag: &str) -> bool {
        matches!(self, Element::Open(start) if start.name().as_ref() == tag)
    }

    fn is_empty(&self, tag: &str) -> bool {
        matches!(self, Element::Empty(start) if start.name().as_ref() == tag)
    }

    fn closes(&self, tag: &str) -> bool {
        matches!(self, Element::Close(end) if end.name().as_ref() == tag)
    }
}

struct Events<'a> {
    reader: Reader<&'a [u8]>,
}

/// The text without its surrounding whitespace (numbers may have it), borrowed if it was.
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
        Cow::Owned(text) => Cow::Owned(text.trim().to_string()),
    }
}

/// `part` after `text`, borrowing while `text` is empty.
fn append<'a>(text: &mut Cow<'a, str>, part: Cow<'a, str>) {
    if text.is_empty() {
        *text = part;
    } else {
        text.to_mut().push_str(&part);
    }
}

impl<'a> Events<'a> {
    fn event(&mut self) -> Result<Event<'a>, String> {
        self.reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", self.reader.error_position()))
    }

    /// The next element event; text between elements must be whitespace.
    fn element(&mut self) -> Result<Element<'a>, String> {
        loop {
            match self.event()? {
                Event::Start(start) => return Ok(Element::Open(start)),
                Event::Empty(start) => return Ok(Element::Empty(start)),
                Event::End(end) => return Ok(Element::Close(end)),
                Event::Eof => return Ok(Element::Eof),
                Event::Text(text) if text.chars().all(|c| c.is_ascii_whitespace()) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err("text between elements".into());
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    fn open(&mut self, want: &str) -> Result<(), String> {
        match self.element()? {
            element if element.opens(want) => Ok(()),
            other => Err(format!("expected <{want}>, found {other:?}")),
        }
    }

    fn close(&mut self, want: &str) -> Result<(), String> {
        match self.element()? {
            element if element.closes(want) => Ok(()),
            other => Err(format!("expected </{want}>, found {other:?}")),
        }
    }

    /// The text up to `</tag>` (entities and character references resolved, CDATA taken as is).
    fn text(&mut self, tag: &str) -> Result<Cow<'a, str>, String> {
        // Borrowed from the body while it is one plain piece (a number, most strings): no allocation
        // for the many numbers of a response, one for a string that is kept.
        let mut text: Cow<'a, str> = Cow::Borrowed("");
        loop {
            match self.event()? {
                Event::Text(part) => append(&mut text, part.xml10_content()),
                Event::CData(part) => append(&mut text, part.into_inner()),
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c,
                        None => match quick_xml::escape::resolve_xml_entity(&reference) {
                            Some(entity) => {
                                text.to_mut().push_str(entity);
                                continue;
                            }
                            None => return Err(format!("unknown entity &{};", &*reference)),
                        },
                    };
                    text.to_mut().push(resolved);
                }
                Event::End(end) if end.name().as_ref() == tag => return Ok(text),
                Event::Comment(_) | Event::PI(_) => {}
                other => {
                    return Err(format!("expected the text of <{tag}>, found {other:?}"));
                }
            }
        }
    }

    /// A value, its `<value>` just opened: read up to and with its `</value>`.
    fn value(&mut self) -> Result<Value, String> {
        // An untyped value is a string: its text is kept whole (whitespace too).
        let mut untyped = String::new();
        loop {
            match self.event()? {
                Event::Text(part) => untyped.push_str(&part.xml10_content()),
                Event::GeneralRef(_) | Event::CData(_) => {
                    return Err("an untyped value with references or CDATA".into());
                }
                Event::End(end) if end.name().as_ref() == "value" => {
                    return Ok(Value::String(untyped));
                }
                Event::Start(start) if untyped.trim().is_empty() => {
                    let value = self.typed(start.name().as_ref())?;
                    self.close("value")?;
                    return Ok(value);
                }
                Event::Empty(start) if untyped.trim().is_empty() => {
                    let value = match start.name().as_ref() {
                        "nil" => Value::Nil,
                        "string" => Value::String(String::new()),
                        "struct" => Value::Struct(BTreeMap::new()),
                        "base64" => Value::Base64(Vec::new()),
                        other => return Err(format!("an empty <{other}/>")),
                    };
                    self.close("value")?;
                    return Ok(value);
                }
                Event::Comment(_) | Event::PI(_) => {}
                other => return Err(format!("in <value>: {other:?}")),
            }
        }
    }

    /// A typed value, its `<tag>` just opened: read up to and with its `</tag>`.
    fn typed(&mut self, tag: &str) -> Result<Value, String> {
        let number = trimmed;
        let shown = tag;
        Ok(match tag {
            "i4" | "int" => Value::Integer(
                number(self.text(tag)?)
                    .parse()
                    .map_err(|e| format!("<{shown}>: {e}"))?,
            ),
            "i8" => Value::Long(
                number(self.text(tag)?)
                    .parse()
                    .map_err(|e| format!("<i8>: {e}"))?,
            ),
            "boolean" => match &*number(self.text(tag)?) {
                "0" => Value::Boolean(false),
                "1" => Value::Boolean(true),
                other => return Err(format!("<boolean>{other}</boolean>")),
            },
            "string" => Value::String(self.text(tag)?.into_owned()),
            "double" => Value::Double(
                number(self.text(tag)?)
                    .parse()
                    .map_err(|e| format!("<double>: {e}"))?,
            ),
            "dateTime.iso8601" => Value::DateTime(
                number(self.text(tag)?)
                    .parse::<DateTime>()
                    .map_err(|e| format!("<dateTime.iso8601>: {e}"))?,
            ),
            "base64" => {
                let text: String = self
                    .text(tag)?
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                Value::Base64(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| format!("<base64>: {e}"))?,
                )
            }
            "nil" => {
                self.close("nil")?;
                Value::Nil
            }
            "struct" => {
                let mut members = BTreeMap::new();
                loop {
                    match self.element()? {
                        element if element.closes("struct") => break,
                        element if element.opens("member") => {
                            self.open("name")?;
                            let key = self.text("name")?.into_owned();
                            self.open("value")?;
                            let value = self.value()?;
                            self.close("member")?;
                            members.insert(key, value);
                        }
                        other => return Err(format!("in <struct>: {other:?}")),
                    }
                }
                Value::Struct(members)
            }
            "array" => {
                let mut values = Vec::new();
                match self.element()? {
                    element if element.is_empty("data") => {}
                    element if element.opens("data") => loop {
                        match self.element()? {
                            element if element.closes("data") => break,
                            element if element.opens("value") => values.push(self.value()?),
                            element if element.is_empty("value") => {
                                values.push(Value::String(String::new()));
                            }
                            other => return Err(format!("in <data>: {other:?}")),
                        }
                    },
                    other => return Err(format!("in <array>: {other:?}")),
                }
                self.close("array")?;
                // Exact: a worker's arches and channels, and the multicall's results, are kept whole.
                values.shrink_to_fit();
                Value::Array(values)
            }
            _ => return Err(format!("unknown value type <{shown}>")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::decode_with_dxr;
    use kobo_testkit::wire::{Export, py};

    /// The streaming reader takes `body` and reads what dxr reads from it.
    #[track_caller]
    fn same_as_dxr(body: &str) -> Result<Value, Fault> {
        let ours = response(body).unwrap_or_else(|e| panic!("refused ({e}): {body}"));
        let theirs = decode_with_dxr(body).unwrap_or_else(|e| panic!("dxr refuses ({e}): {body}"));
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{body}"),
            (Err(a), Err(b)) => {
                assert_eq!((a.code(), a.string()), (b.code(), b.string()), "{body}");
            }
            _ => panic!("one reads a fault, the other a value: {ours:?} / {theirs:?}"),
        }
        ours
    }

    #[test]
    fn every_response_of_the_real_hub_captures_reads_as_dxr_reads_it() {
        let samples = kobo_testkit::data::read("xmlrpc-samples.md");
        let mut read = 0;
        for block in samples.split("```http\n").skip(1) {
            let block = block.split("\n```").next().unwrap_or_default();
            if !block.starts_with("HTTP/") {
                continue;
            }
            let Some((_, body)) = block.split_once("\n\n") else {
                continue;
            };
            if body.contains("<methodResponse>") {
                let _value_or_fault = same_as_dxr(body);
                read += 1;
            }
        }
        assert!(read >= 10, "only {read} responses in the captures");
    }

    #[test]
    fn the_worker_infos_of_a_generated_hub_read_as_dxr_reads_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, worker_dir) = (dir.path().join("hub.sqlite3"), dir.path().join("worker"));
        let spec = kobo_hubgen::HubSpec {
            workers: 300,
            tasks: 0,
            seed: 7,
        };
        kobo_hubgen::sqlite::generate(&db, &spec).expect("generate the hub");
        kobo_hubgen::write_worker_dir(&worker_dir, &spec).expect("last-seen files");
        let exports: Vec<Export> =
            kobo_testkit::xmlrpc_hub::exports_from_sqlite(&db, Some(&worker_dir)).expect("export");
        let mut items: Vec<Result<String, (i64, String)>> =
            exports.iter().map(|e| Ok(py::value(&e.py()))).collect();
        items.push(Err((
            1,
            "<class 'kobo.hub.models.Worker.DoesNotExist'>: gone & <lost>".into(),
        )));
        let Ok(Value::Array(results)) = same_as_dxr(&py::multicall(&items)) else {
            panic!("not an array");
        };
        assert_eq!(results.len(), 301);
    }

    #[test]
    fn every_value_type_and_odd_text_reads_as_dxr_reads_it() {
        let strings = [
            "",
            " padded ",
            "a & b < c > d",
            "é ü 漢字 🦀",
            "line\nbreak",
            "\"quoted\" 'single'",
        ];
        let mut members = BTreeMap::new();
        for (i, s) in strings.iter().enumerate() {
            members.insert(format!("s{i} & <k>"), Value::String((*s).into()));
        }
        members.insert("int".into(), Value::Integer(-2147483648));
        members.insert("long".into(), Value::Long(i64::MAX));
        members.insert("yes".into(), Value::Boolean(true));
        members.insert("no".into(), Value::Boolean(false));
        members.insert("double".into(), Value::Double(-1.5e-7));
        members.insert("nil".into(), Value::Nil);
        members.insert("bytes".into(), Value::Base64(vec![0, 1, 2, 254, 255]));
        members.insert(
            "when".into(),
            Value::DateTime("20231114T22:13:20".parse().expect("a datetime")),
        );
        members.insert(
            "nested".into(),
            Value::Array(vec![
                Value::Array(Vec::new()),
                Value::Struct(BTreeMap::new()),
                Value::Array(vec![Value::Integer(1), Value::String("x".into())]),
            ]),
        );
        let value = Value::Struct(members);
        let xml = dxr::MethodResponse {
            value: value.clone(),
        }
        .to_xml()
        .expect("encodes");
        assert_eq!(same_as_dxr(&xml), Ok(value.clone()));
        let pretty = dxr::MethodResponse {
            value: value.clone(),
        }
        .to_xml_pretty()
        .expect("encodes");
        assert_eq!(same_as_dxr(&pretty), Ok(value));

        // Python's forms: untyped strings, character references, CDATA-free escapes, comments.
        for (body, want) in [
            (
                "<methodResponse><params><param><value>plain</value></param></params></methodResponse>",
                Value::String("plain".into()),
            ),
            (
                "<?xml version='1.0'?>\n<!-- hi --><methodResponse>\n<params>\n<param>\n<value><string>caf&#233; &#x41;&amp;</string></value>\n</param>\n</params>\n</methodResponse>\n",
                Value::String("café A&".into()),
            ),
            (
                "<methodResponse><params><param><value><i4> 42 </i4></value></param></params></methodResponse>",
                Value::Integer(42),
            ),
            (
                "<methodResponse><params><param><value><array><data/></array></value></param></params></methodResponse>",
                Value::Array(Vec::new()),
            ),
            (
                "<methodResponse><params><param><value><string/></value></param></params></methodResponse>",
                Value::String(String::new()),
            ),
        ] {
            assert_eq!(same_as_dxr(body), Ok(want), "{body}");
        }
        let fault = py::fault(-32601, "method \"x\" is not supported");
        let Err(fault) = same_as_dxr(&fault) else {
            panic!("not a fault");
        };
        assert_eq!(fault.code(), -32601);
    }

    #[test]
    fn what_is_not_a_whole_response_is_refused_and_left_to_dxr() {
        let good = py::response(&py::Py::List(vec![py::Py::Int(1), py::Py::Str("a".into())]));
        for cut in [10, good.len() / 2, good.len() - 20] {
            assert!(response(&good[..cut]).is_err(), "cut at {cut}");
        }
        for body in [
            "",
            "<html><body>502</body></html>",
            "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><foo>1</foo></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><int>1</int></value></param></params></methodResponse><extra/>",
            "<methodResponse><params><param><value>a<int>1</int></value></param></params></methodResponse>",
            "<methodResponse><fault><value><struct></struct></value></fault></methodResponse>",
            // Mismatched end tags (quick-xml's own check is off: these are this reader's).
            "<methodResponse><params><param><value><int>1</i4></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><struct><member><name>a</name><value>x</value></memberx></struct></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><array><data><value>x</value></datum></array></value></param></params></methodResponse>",
            "<methodResponse><params><param><value>x</valu></param></params></methodResponse>",
        ] {
            assert!(response(body).is_err(), "{body}");
        }
    }
}
