//! The answer to a `system.multicall` of `client.get_worker_info`, decoded as it streams in: each result
//! straight into a worker record, with no value tree and without holding the body.
//!
//! Why by hand: dxr builds a `dxr::Value` tree of the whole response from a body held whole (about 88 µs
//! a worker on kobo-hubgen's hub, the body and the tree in memory at once), and quick-xml's tokenizing
//! alone costs 14-20 µs a worker (`bench/results/2026-12-03-xmlrpc-reader.md`), over the 10 µs. No
//! crate decodes XML-RPC into a caller's records as the bytes arrive. The scanner here reads only the
//! forms Python's `xmlrpc.client` marshaller writes (elements without attributes, text with entities and
//! character references); it decides nothing else:
//!
//! - a result it does not read in full (a fault, `{}` for a deleted worker, a missing field, a value of
//!   another type, a comment, CDATA, a `\r`, an untyped value with spaces around it) is handed, byte for
//!   byte, to dxr, and then to [`crate::decode::worker`] as before;
//! - a body whose start is not a multicall's array (a fault response, an HTML page, an XML declaration
//!   other than `<?xml ...?>`) is kept whole and read by the old path, so its error is as before.
//!
//! Memory: the unread tail of the body (at most [`BATCH`] plus one chunk plus one result) and the records.

use std::borrow::Cow;

use dxr::{MethodResponse, Value};
use kobo_backend_api::LastSeen;
use kobo_backend_api::normalise::sorted_names;
use memchr::{memchr, memmem};

use crate::decode::{DecodedWorker, parse_utc};
use crate::rpc::{ItemError, diagnose, multicall_item};

/// Bytes gathered before the scanner runs: a result cut by the end of what has arrived is scanned again
/// from its start, so this keeps the re-scanned share small (kobo's results are about 2 KB).
pub(crate) const BATCH: usize = 64 * 1024;

/// One result of the multicall.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Read by the scanner: a worker export with every field of the expected type.
    Worker(Box<DecodedWorker>),
    /// Anything else, read by dxr: what [`multicall_item`] makes of it.
    Value(Result<Value, ItemError>),
}

/// What a whole body gave.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// One answer per result, in order: as many as the hub sent, for the caller to check against the
    /// calls.
    Answers(Vec<Answer>),
    /// The body does not start as a multicall's array: it is all here, for the old path to read.
    Whole(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Before `<data>` of the multicall's array.
    Prologue,
    Results,
    /// `</data>` read: the closing tags, then the end.
    Epilogue,
    /// Not a multicall's array: every byte is kept.
    Whole,
}

/// The decoder: [`WorkerInfos::take`] each chunk as it arrives, then [`WorkerInfos::finish`].
#[derive(Debug)]
pub(crate) struct WorkerInfos<'n> {
    /// The worker asked for by each call, in order.
    names: &'n [String],
    /// What has arrived and is not read yet.
    pending: Vec<u8>,
    phase: Phase,
    answers: Vec<Answer>,
    /// The most bytes held at once, for the memory test.
    held: usize,
}

impl<'n> WorkerInfos<'n> {
    pub(crate) fn new(names: &'n [String]) -> Self {
        WorkerInfos {
            names,
            pending: Vec::with_capacity(2 * BATCH),
            phase: Phase::Prologue,
            answers: Vec::with_capacity(names.len()),
            held: 0,
        }
    }

    /// Takes the next piece of the body; an error says why the body is not the multicall's answer.
    pub(crate) fn take(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        self.held = self.held.max(self.pending.len());
        if self.phase != Phase::Whole && self.pending.len() >= BATCH {
            self.advance(false)?;
        }
        Ok(())
    }

    /// The answers once the whole body has arrived.
    pub(crate) fn finish(mut self) -> Result<Decoded, String> {
        self.advance(true)?;
        match self.phase {
            Phase::Whole => Ok(Decoded::Whole(self.pending)),
            Phase::Epilogue => Ok(Decoded::Answers(self.answers)),
            Phase::Prologue | Phase::Results => Err(format!(
                "the response broke off after {} of {} results",
                self.answers.len(),
                self.names.len()
            )),
        }
    }

    /// The most bytes of the body held at once so far.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }

    /// Reads what can be read of `pending` (`last`: the body has ended) and drops what was read.
    fn advance(&mut self, last: bool) -> Result<(), String> {
        let mut at = 0;
        let outcome = self.read(&mut at, last);
        // What was read ends at a '>' or at the end: a whole UTF-8 text, checked as the old path checks
        // the whole body.
        std::str::from_utf8(&self.pending[..at])
            .map_err(|e| format!("the body is not UTF-8 ({e})"))?;
        if self.phase != Phase::Whole {
            self.pending.drain(..at);
        }
        outcome
    }

    fn read(&mut self, at: &mut usize, last: bool) -> Result<(), String> {
        loop {
            let mut scan = Scanner {
                buf: &self.pending,
                pos: *at,
            };
            match self.phase {
                Phase::Whole => return Ok(()),
                Phase::Prologue => match scan.prologue() {
                    Ok(empty) => {
                        self.phase = if empty {
                            Phase::Epilogue
                        } else {
                            Phase::Results
                        };
                        *at = scan.pos;
                    }
                    Err(Stop::More) if !last => return Ok(()),
                    Err(_) => {
                        self.phase = Phase::Whole;
                        *at = 0;
                        return Ok(());
                    }
                },
                Phase::Results => {
                    scan.skip_space();
                    if scan.rest().starts_with(b"</data>") {
                        *at = scan.pos + b"</data>".len();
                        self.phase = Phase::Epilogue;
                        continue;
                    }
                    let start = scan.pos;
                    let index = self.answers.len();
                    let fast = match self.names.get(index) {
                        Some(requested) => scan.result(requested),
                        None => Err(Stop::Unusual),
                    };
                    match fast {
                        Ok(worker) => {
                            self.answers.push(Answer::Worker(Box::new(worker)));
                            *at = scan.pos;
                        }
                        Err(_) => {
                            let Some(end) = element_end(&self.pending, start)? else {
                                if last {
                                    return Err(format!(
                                        "the response broke off inside result {} of {}",
                                        index + 1,
                                        self.names.len()
                                    ));
                                }
                                return Ok(());
                            };
                            let value = with_dxr(&self.pending[start..end], index)?;
                            self.answers.push(Answer::Value(multicall_item(value)));
                            *at = end;
                        }
                    }
                }
                Phase::Epilogue => {
                    return match scan.epilogue() {
                        Ok(()) if last => {
                            *at = scan.pos;
                            Ok(())
                        }
                        Ok(()) | Err(Stop::More) if !last => Ok(()),
                        Ok(()) | Err(Stop::More) => {
                            Err("the response broke off after the results".into())
                        }
                        Err(Stop::Unusual) => Err(format!(
                            "after the multicall's results: {}",
                            diagnose(&String::from_utf8_lossy(scan.rest()))
                        )),
                    };
                }
            }
        }
    }
}

/// One result's bytes (a `<value>` element) read by dxr.
fn with_dxr(item: &[u8], index: usize) -> Result<Value, String> {
    let text = std::str::from_utf8(item).map_err(|e| format!("the body is not UTF-8 ({e})"))?;
    let document =
        format!("<methodResponse><params><param>{text}</param></params></methodResponse>");
    MethodResponse::from_xml(&document)
        .map(|response| response.value)
        .map_err(|_| {
            format!(
                "result {} of the multicall: {}",
                index + 1,
                diagnose(&document)
            )
        })
}

/// The end of the element starting at the first `<` at or after `pos` (comments, CDATA and processing
/// instructions inside skipped); `None` when it has not all arrived.
fn element_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, String> {
    let mut depth = 0usize;
    loop {
        let Some(lt) = memchr(b'<', &buf[pos..]) else {
            return Ok(None);
        };
        pos += lt;
        let rest = &buf[pos..];
        let skipped = [
            (&b"<!--"[..], &b"-->"[..]),
            (b"<![CDATA[", b"]]>"),
            (b"<?", b"?>"),
        ];
        if let Some((_, end)) = skipped.iter().find(|(open, _)| rest.starts_with(open)) {
            match memmem::find(rest, end) {
                Some(found) => {
                    pos += found + end.len();
                    continue;
                }
                None => return Ok(None),
            }
        }
        if skipped.iter().any(|(open, _)| open.starts_with(rest)) {
            return Ok(None);
        }
        if rest.starts_with(b"<!") {
            return Err("a declaration inside the multicall's results".into());
        }
        // The tag's end: the first '>' outside a quoted attribute value.
        let mut quote = None;
        let Some(gt) = rest.iter().enumerate().skip(1).find_map(|(i, &b)| {
            match (quote, b) {
                (None, b'"' | b'\'') => quote = Some(b),
                (Some(q), _) if q == b => quote = None,
                (None, b'>') => return Some(i),
                _ => {}
            }
            None
        }) else {
            return Ok(None);
        };
        let inner = &rest[1..gt];
        pos += gt + 1;
        if inner.first() == Some(&b'/') {
            depth = depth
                .checked_sub(1)
                .ok_or("a closing tag where a result was expected")?;
        } else if inner.last() != Some(&b'/') {
            depth += 1;
        }
        if depth == 0 {
            return Ok(Some(pos));
        }
    }
}

/// The elements around a multicall's results, outermost first (then `<data>`).
const ENVELOPE: [&[u8]; 5] = [b"methodResponse", b"params", b"param", b"value", b"array"];

/// Why the scanner stopped short.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// The bytes ran out: wait for more.
    More,
    /// Something the scanner does not read (dxr will).
    Unusual,
}

type Step<T> = Result<T, Stop>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tag<'a> {
    Open(&'a [u8]),
    Close(&'a [u8]),
    Empty(&'a [u8]),
}

/// A position in the bytes that have arrived.
struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The fields of a worker export that make its record.
#[derive(Default)]
struct Export<'a> {
    name: Option<Cow<'a, str>>,
    enabled: Option<bool>,
    ready: Option<bool>,
    current_load: Option<i64>,
    max_load: Option<i64>,
    task_count: Option<i64>,
    /// `None`: no such field; `Some(None)`: nil.
    last_seen: Option<Option<Cow<'a, str>>>,
    id: Option<i64>,
    arches: Option<Vec<(Option<i64>, Cow<'a, str>)>>,
    channels: Option<Vec<(Option<i64>, Cow<'a, str>)>>,
}

/// Names of `{id, name, ...}` entries, sorted and de-duplicated; `(id, name)` of those with an id and a
/// non-empty name (as [`crate::decode`] reads them).
fn names_and_ids(entries: Vec<(Option<i64>, Cow<'_, str>)>) -> (Vec<String>, Vec<(i64, String)>) {
    let ids = entries
        .iter()
        .filter_map(|(id, name)| match id {
            Some(id) if !name.is_empty() => Some((*id, name.to_string())),
            _ => None,
        })
        .collect();
    let names = sorted_names(entries.into_iter().map(|(_, name)| Some(name.into_owned())));
    (names, ids)
}

impl<'a> Export<'a> {
    /// The record, when every field is here, the name is the one asked for and last seen reads.
    fn into_decoded(self, requested: &str) -> Option<DecodedWorker> {
        let name = self.name.filter(|name| name == requested)?;
        let mut record = kobo_backend_api::WorkerRecord::new(name.into_owned());
        record.enabled = self.enabled?;
        record.ready = self.ready?;
        record.current_load = self.current_load?;
        record.max_load = self.max_load?;
        record.task_count = self.task_count?;
        let (arches, arch_ids) = names_and_ids(self.arches?);
        let (channels, channel_ids) = names_and_ids(self.channels?);
        record.arches = arches;
        record.channels = channels;
        record.last_seen = match &self.last_seen {
            None => LastSeen::Unavailable,
            Some(None) => LastSeen::Never,
            Some(Some(text)) => LastSeen::At(parse_utc(text)?),
        };
        Some(DecodedWorker {
            record,
            no_last_seen_field: self.last_seen.is_none(),
            note: None,
            id: self.id,
            arch_ids,
            channel_ids,
        })
    }
}

/// kobo's (and XML's) whitespace between elements.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn is_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Text with XML's five entities and character references resolved; `None` for anything else, or a
/// reference to a character XML does not allow.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..].find(';')? + amp;
        let entity = &rest[amp + 1..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code).filter(|&c| {
                    matches!(c, '\t' | '\n' | '\r')
                        || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
                })?
            }
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn skip_space(&mut self) {
        while self.buf.get(self.pos).copied().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    /// The next tag, whitespace before it skipped.
    fn tag(&mut self) -> Step<Tag<'a>> {
        self.skip_space();
        let rest = self.rest();
        match rest.first() {
            None => return Err(Stop::More),
            Some(b'<') => {}
            Some(_) => return Err(Stop::Unusual),
        }
        let end = memchr(b'>', rest).ok_or(Stop::More)?;
        let tag = match &rest[1..end] {
            [b'/', name @ ..] => Tag::Close(name),
            [name @ .., b'/'] => Tag::Empty(name),
            name => Tag::Open(name),
        };
        let (Tag::Open(name) | Tag::Close(name) | Tag::Empty(name)) = tag;
        if !is_name(name) {
            return Err(Stop::Unusual);
        }
        self.pos += end + 1;
        Ok(tag)
    }

    fn expect(&mut self, want: Tag<'_>) -> Step<()> {
        if self.tag()? == want {
            Ok(())
        } else {
            Err(Stop::Unusual)
        }
    }

    fn open(&mut self, name: &[u8]) -> Step<()> {
        self.expect(Tag::Open(name))
    }

    fn close(&mut self, name: &[u8]) -> Step<()> {
        self.expect(Tag::Close(name))
    }

    /// The text up to `</name>`, and past it.
    fn text(&mut self, name: &[u8]) -> Step<Cow<'a, str>> {
        let rest = self.rest();
        let lt = memchr(b'<', rest).ok_or(Stop::More)?;
        let raw = &rest[..lt];
        self.pos += lt;
        self.close(name)?;
        let raw = std::str::from_utf8(raw).map_err(|_| Stop::Unusual)?;
        if raw.contains('\r') {
            // XML reads "\r\n" as "\n": dxr's to decide.
            return Err(Stop::Unusual);
        }
        if raw.contains('&') {
            unescape(raw).map(Cow::Owned).ok_or(Stop::Unusual)
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// From `<?xml ...?>` (if any) to the multicall array's `<data>`; `true` when it is `<data/>`.
    fn prologue(&mut self) -> Step<bool> {
        self.skip_space();
        if self.rest().starts_with(b"<?xml") {
            let end = memmem::find(self.rest(), b"?>").ok_or(Stop::More)?;
            self.pos += end + 2;
        } else if b"<?xml".starts_with(self.rest()) {
            return Err(Stop::More);
        }
        for tag in ENVELOPE {
            self.open(tag)?;
        }
        match self.tag()? {
            Tag::Open(b"data") => Ok(false),
            Tag::Empty(b"data") => Ok(true),
            _ => Err(Stop::Unusual),
        }
    }

    /// After the results: the closing tags and nothing but whitespace to the end.
    fn epilogue(&mut self) -> Step<()> {
        for tag in ENVELOPE.iter().rev() {
            self.close(tag)?;
        }
        self.skip_space();
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(Stop::Unusual)
        }
    }

    /// One result, `[export]`: `<value><array><data><value><struct>...` through its `</value>`.
    fn result(&mut self, requested: &str) -> Step<DecodedWorker> {
        for tag in [&b"value"[..], b"array", b"data", b"value", b"struct"] {
            self.open(tag)?;
        }
        let export = self.export()?;
        for tag in [&b"value"[..], b"data", b"array", b"value"] {
            self.close(tag)?;
        }
        export.into_decoded(requested).ok_or(Stop::Unusual)
    }

    /// A worker export's members, through `</struct>`.
    fn export(&mut self) -> Step<Export<'a>> {
        let mut export = Export::default();
        while self.member()? {
            let key = self.member_name()?;
            match key.as_ref() {
                "name" => export.name = Some(self.string()?),
                "enabled" => export.enabled = Some(self.boolean()?),
                "ready" => export.ready = Some(self.boolean()?),
                "current_load" => export.current_load = Some(self.integer()?),
                "max_load" => export.max_load = Some(self.integer()?),
                "task_count" => export.task_count = Some(self.integer()?),
                "id" => export.id = Some(self.integer()?),
                "last_seen" => export.last_seen = Some(self.nil_or_string()?),
                "arches" => export.arches = Some(self.entries()?),
                "channels" => export.channels = Some(self.entries()?),
                _ => self.skip_value()?,
            }
            self.close(b"member")?;
        }
        Ok(export)
    }

    /// `true` at `<member>`, `false` at `</struct>` (both read).
    fn member(&mut self) -> Step<bool> {
        match self.tag()? {
            Tag::Open(b"member") => Ok(true),
            Tag::Close(b"struct") => Ok(false),
            _ => Err(Stop::Unusual),
        }
    }

    /// `<name>...</name><value>`: the member's name.
    fn member_name(&mut self) -> Step<Cow<'a, str>> {
        self.open(b"name")?;
        let key = self.text(b"name")?;
        self.open(b"value")?;
        Ok(key)
    }

    /// A string value, its `<value>` read: `<string>..</string>`, `<string/>`, or untyped text.
    fn string(&mut self) -> Step<Cow<'a, str>> {
        if self.rest().first().is_some_and(|&b| b != b'<') {
            return self.text(b"value");
        }
        let text = match self.tag()? {
            Tag::Open(b"string") => self.text(b"string")?,
            Tag::Empty(b"string") => Cow::Borrowed(""),
            Tag::Close(b"value") => return Ok(Cow::Borrowed("")),
            _ => return Err(Stop::Unusual),
        };
        self.close(b"value")?;
        Ok(text)
    }

    fn nil_or_string(&mut self) -> Step<Option<Cow<'a, str>>> {
        if self.rest().starts_with(b"<nil/>") {
            self.pos += b"<nil/>".len();
            self.close(b"value")?;
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// The text of a `<tag>` value, its `<value>` read, through `</value>`.
    fn typed(&mut self, tags: &[&[u8]]) -> Step<(&'a [u8], Cow<'a, str>)> {
        match self.tag()? {
            Tag::Open(tag) if tags.contains(&tag) => {
                let text = self.text(tag)?;
                self.close(b"value")?;
                Ok((tag, text))
            }
            _ => Err(Stop::Unusual),
        }
    }

    fn boolean(&mut self) -> Step<bool> {
        match self.typed(&[b"boolean"])?.1.as_ref() {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(Stop::Unusual),
        }
    }

    /// `<int>`, `<i4>` (32 bits) or `<i8>`: digits with an optional minus sign only (dxr decides the rest).
    fn integer(&mut self) -> Step<i64> {
        let (tag, text) = self.typed(&[b"int", b"i4", b"i8"])?;
        let digits = text.strip_prefix('-').unwrap_or(&text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Stop::Unusual);
        }
        let value: i64 = text.parse().map_err(|_| Stop::Unusual)?;
        if tag != b"i8" && i32::try_from(value).is_err() {
            return Err(Stop::Unusual);
        }
        Ok(value)
    }

    /// An array of `{id, name, ...}` structs, its `<value>` read, through `</value>`.
    fn entries(&mut self) -> Step<Vec<(Option<i64>, Cow<'a, str>)>> {
        self.open(b"array")?;
        let mut entries = Vec::new();
        match self.tag()? {
            Tag::Open(b"data") => {}
            Tag::Empty(b"data") => {
                self.close(b"array")?;
                self.close(b"value")?;
                return Ok(entries);
            }
            _ => return Err(Stop::Unusual),
        }
        loop {
            match self.tag()? {
                Tag::Close(b"data") => break,
                Tag::Open(b"value") => {}
                _ => return Err(Stop::Unusual),
            }
            self.open(b"struct")?;
            let (mut id, mut name) = (None, None);
            while self.member()? {
                let key = self.member_name()?;
                match key.as_ref() {
                    "id" => id = Some(self.integer()?),
                    "name" => name = Some(self.string()?),
                    _ => self.skip_value()?,
                }
                self.close(b"member")?;
            }
            self.close(b"value")?;
            entries.push((id, name.ok_or(Stop::Unusual)?));
        }
        self.close(b"array")?;
        self.close(b"value")?;
        Ok(entries)
    }

    /// Past a value whose `<value>` is read, through its `</value>`.
    fn skip_value(&mut self) -> Step<()> {
        let mut depth = 0usize;
        loop {
            let lt = memchr(b'<', self.rest()).ok_or(Stop::More)?;
            self.pos += lt;
            match self.tag()? {
                Tag::Open(_) => depth += 1,
                Tag::Empty(_) => {}
                Tag::Close(name) if depth == 0 => {
                    return if name == b"value" {
                        Ok(())
                    } else {
                        Err(Stop::Unusual)
                    };
                }
                Tag::Close(_) => depth -= 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kobo_backend_api::secrets::Secrets;
    use kobo_testkit::wire::{Export, Py, py};

    type Outcome = Result<Vec<Result<DecodedWorker, String>>, String>;

    /// What the old path makes of `body`: dxr reads it whole, then each result becomes a record or why not.
    fn via_dxr(body: &str, names: &[String]) -> Outcome {
        let answers = crate::whole_answers(body.as_bytes(), names)?;
        Ok(records(answers, names))
    }

    fn records(answers: Vec<Answer>, names: &[String]) -> Vec<Result<DecodedWorker, String>> {
        names
            .iter()
            .zip(answers)
            .map(|(name, answer)| crate::worker(name, answer, &Secrets::default()))
            .collect()
    }

    /// `body` through the streaming decoder in pieces of `piece` bytes; the outcome and how many results
    /// the scanner read itself.
    fn via_stream(body: &str, names: &[String], piece: usize) -> (Outcome, usize) {
        let mut decoder = WorkerInfos::new(names);
        let mut fed = Ok(());
        for part in body.as_bytes().chunks(piece) {
            fed = decoder.take(part);
            if fed.is_err() {
                break;
            }
        }
        let answers = match fed.and_then(|()| decoder.finish()) {
            Ok(Decoded::Answers(answers)) => answers,
            Ok(Decoded::Whole(whole)) => {
                assert_eq!(whole, body.as_bytes(), "a whole body is kept byte for byte");
                return (via_dxr(body, names), 0);
            }
            Err(why) => return (Err(why), 0),
        };
        if answers.len() != names.len() {
            return (
                Err(format!(
                    "system.multicall answered {} results for {} calls",
                    answers.len(),
                    names.len()
                )),
                0,
            );
        }
        let fast = answers
            .iter()
            .filter(|a| matches!(a, Answer::Worker(_)))
            .count();
        (Ok(records(answers, names)), fast)
    }

    const PIECES: [usize; 6] = [1, 7, 512, 16 * 1024, BATCH + 3, usize::MAX];

    /// `body` reads as dxr reads it at every piece size; how many results the scanner read itself.
    #[track_caller]
    fn same_as_dxr(body: &str, names: &[String]) -> usize {
        let expected = via_dxr(body, names);
        assert!(expected.is_ok(), "dxr refuses: {expected:?}");
        let mut fast = None;
        for piece in PIECES {
            let (outcome, read) = via_stream(body, names, piece);
            assert_eq!(outcome, expected, "in pieces of {piece} bytes");
            assert!(fast.is_none_or(|f| f == read), "in pieces of {piece} bytes");
            fast = Some(read);
        }
        fast.unwrap_or_default()
    }

    /// kobo-hubgen's hub of `workers` workers (the one kobo-bench serves) as the hub exports it.
    fn generated(workers: u32) -> Vec<Export> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, worker_dir) = (dir.path().join("hub.sqlite3"), dir.path().join("worker"));
        let spec = kobo_hubgen::HubSpec {
            workers,
            tasks: 0,
            seed: 7,
        };
        kobo_hubgen::sqlite::generate(&db, &spec).expect("generate the hub");
        kobo_hubgen::write_worker_dir(&worker_dir, &spec).expect("last-seen files");
        kobo_testkit::xmlrpc_hub::exports_from_sqlite(&db, Some(&worker_dir)).expect("export")
    }

    fn multicall_of(exports: &[Export]) -> (String, Vec<String>) {
        let items: Vec<_> = exports.iter().map(|e| Ok(py::value(&e.py()))).collect();
        let names = exports.iter().map(|e| e.name.clone()).collect();
        (py::multicall(&items), names)
    }

    #[test]
    fn a_generated_hub_reads_as_dxr_reads_it_in_pieces_of_every_size() {
        let exports = generated(300);
        let (body, names) = multicall_of(&exports);
        assert_eq!(
            same_as_dxr(&body, &names),
            300,
            "every worker read by the scanner"
        );
        let never = via_dxr(&body, &names)
            .unwrap()
            .iter()
            .filter(|w| matches!(w, Ok(w) if w.record.last_seen == LastSeen::Never))
            .count();
        assert!(
            never > 0 && never < 300,
            "the hub mixes seen and never seen workers"
        );
    }

    #[test]
    fn the_worker_infos_of_the_real_hub_captures_read_as_dxr_reads_them() {
        let samples = kobo_testkit::data::read("xmlrpc-samples.md");
        let mut items = Vec::new();
        for section in samples
            .split("\n### ")
            .filter(|s| s.starts_with("client.get_worker_info"))
        {
            let response = section
                .split("Response on the wire:")
                .nth(1)
                .expect("a response");
            let value = response
                .split("<param>\n")
                .nth(1)
                .and_then(|rest| rest.split("</param>").next())
                .expect("a param");
            items.push(value.to_string());
        }
        assert_eq!(items.len(), 3, "seen, never seen, missing");
        let names: Vec<String> = items
            .iter()
            .map(|value| {
                value
                    .split("<name>name</name>\n<value><string>")
                    .nth(1)
                    .and_then(|rest| rest.split('<').next())
                    .unwrap_or("worker-gone.example.com")
                    .to_string()
            })
            .collect();
        let body = py::multicall(&items.into_iter().map(Ok).collect::<Vec<_>>());
        assert_eq!(
            same_as_dxr(&body, &names),
            2,
            "the missing worker's {{}} goes to dxr"
        );
        let read = via_dxr(&body, &names).unwrap();
        assert_eq!(
            read[0].as_ref().unwrap().record.last_seen,
            LastSeen::At(1_749_999_904)
        );
        assert_eq!(read[1].as_ref().unwrap().record.last_seen, LastSeen::Never);
        assert!(read[2].as_ref().unwrap_err().contains("no such worker"));
    }

    fn export() -> Export {
        generated(1).remove(0)
    }

    /// The dump of `export`'s value with `from` replaced by `to` (which must occur).
    fn edited(from: &str, to: &str) -> String {
        let dumped = py::value(&export().py());
        assert!(dumped.contains(from), "{from} in {dumped}");
        dumped.replacen(from, to, 1)
    }

    #[test]
    fn results_the_scanner_does_not_read_go_to_dxr_and_read_as_before() {
        let e = export();
        let name = e.name.clone();
        let int = |field: &str| format!("<name>{field}</name>\n<value><int>");
        let fields_of = |field: &str| {
            let dumped = py::value(&e.py());
            let start = dumped
                .find(&format!("<member>\n<name>{field}</name>"))
                .unwrap();
            let end = start + dumped[start..].find("</member>\n").unwrap() + "</member>\n".len();
            (dumped[..start].to_string(), dumped[end..].to_string())
        };
        let without = |field: &str| {
            let (before, after) = fields_of(field);
            before + &after
        };
        let escaped_name = name.replacen('.', "&#46;", 1).replacen('-', "&#x2d;", 1);
        // (the item, whether the scanner reads it itself)
        let cases: Vec<(String, bool)> = vec![
            (py::value(&e.py()), true),
            (edited(&int("max_load"), "<name>max_load</name>\n<value><i4>").replacen("</int></value>\n</member>\n<member>\n<name>ready", "</i4></value>\n</member>\n<member>\n<name>ready", 1), true),
            (edited(&int("id"), "<name>id</name>\n<value><i8>").replacen("</int></value>\n</member>\n<member>\n<name>name", "</i8></value>\n</member>\n<member>\n<name>name", 1), true),
            (edited(&format!("<string>{name}</string>"), &format!("<string>{escaped_name}</string>")), true),
            (edited(&format!("<value><string>{name}</string></value>"), &format!("<value>{name}</value>")), true),
            (edited("<name>version</name>\n<value><nil/></value>", "<name>version</name>\n<value><struct><member><name>a</name><value><array><data><value><i4>1</i4></value></data></array></value></member></struct></value>"), true),
            (without("last_seen"), true),
            (edited("<struct>\n", "<struct>\r\n"), true),
            (edited(&format!("<string>{name}</string>"), &format!("<string>{name}\r</string>")), false),
            (edited("<name>task_count</name>", "<name>enabled</name>\n<value><boolean>0</boolean></value>\n</member>\n<member>\n<name>task_count</name>"), true),
            (
                py::value(&Export { channels: vec![], ..e.clone() }.py()).replacen(
                    "<name>channels</name>\n<value><array><data>\n</data></array>",
                    "<name>channels</name>\n<value><array><data/></array>",
                    1,
                ),
                true,
            ),
            // to dxr
            (
                py::value(&Export { last_seen: None, ..e.clone() }.py()).replacen(
                    "<name>last_seen</name>\n<value><nil/>",
                    "<name>last_seen</name>\n<value><dateTime.iso8601>20250615T15:05:04</dateTime.iso8601>",
                    1,
                ),
                false,
            ),
            (edited("<name>channels</name>\n<value><array><data>\n", "<name>channels</name>\n<value><array><data>\n<value><string>extra</string></value>\n"), false),
            (py::value(&Py::Dict(vec![])), false),
            (without("max_load"), false),
            (edited("<name>enabled</name>\n<value><boolean>", "<name>enabled</name>\n<value><int>").replacen("</boolean></value>\n</member>\n<member>\n<name>max_load", "</int></value>\n</member>\n<member>\n<name>max_load", 1), false),
            (py::value(&Export { last_seen: Some("soon".into()), ..e.clone() }.py()), false),
            (py::value(&Export { last_seen: Some("2025-06-15T15:05:04Z".into()), ..e.clone() }.py()), true),
            (edited(&format!("<string>{name}</string>"), &format!("<string><![CDATA[{name}]]></string>")), false),
            (edited("<struct>\n", "<struct>\n<!-- a comment -->\n"), false),

            (edited(&format!("<string>{name}</string>"), "<string>another.example.com</string>"), false),
            (edited("<name>max_load</name>\n<value><int>", "<name>max_load</name>\n<value><int> "), false),
        ];
        for (i, (item, fast)) in cases.iter().enumerate() {
            let names = vec![name.clone()];
            let body = py::multicall(&[Ok(item.clone())]);
            if via_dxr(&body, &names).is_err() {
                panic!("case {i}: dxr refuses {body}");
            }
            assert_eq!(
                same_as_dxr(&body, &names),
                usize::from(*fast),
                "case {i}: {item}"
            );
        }
        // All of them in one multicall, with a fault among them.
        let mut items: Vec<Result<String, (i64, String)>> =
            cases.into_iter().map(|(item, _)| Ok(item)).collect();
        items.insert(3, Err((1, "<type 'exceptions.ValueError'>: boom".into())));
        let names = vec![name; items.len()];
        let body = py::multicall(&items);
        assert!(same_as_dxr(&body, &names) >= 8);
    }

    #[test]
    fn a_body_that_is_not_a_multicall_array_is_kept_whole() {
        let names = vec!["w".to_string()];
        for body in [
            py::fault(1, "nope"),
            "<html><body>502 Bad Gateway</body></html>".to_string(),
            String::new(),
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><string>x</string></value></param></params></methodResponse>".into(),
        ] {
            for piece in PIECES {
                let mut decoder = WorkerInfos::new(&names);
                for part in body.as_bytes().chunks(piece) {
                    decoder.take(part).unwrap();
                }
                match decoder.finish() {
                    Ok(Decoded::Whole(whole)) => assert_eq!(whole, body.as_bytes()),
                    other => panic!("{body}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn broken_bodies_are_errors() {
        let exports = generated(3);
        let (body, names) = multicall_of(&exports);
        let error = |body: &[u8], names: &[String]| -> String {
            for piece in PIECES {
                let mut decoder = WorkerInfos::new(names);
                let mut fed = Ok(());
                for part in body.chunks(piece) {
                    fed = fed.and_then(|()| decoder.take(part));
                }
                match fed.and_then(|()| decoder.finish()) {
                    Err(why) => {
                        if piece == usize::MAX {
                            return why;
                        }
                    }
                    Ok(Decoded::Answers(a)) if a.len() != names.len() => {
                        if piece == usize::MAX {
                            return format!("{} answers", a.len());
                        }
                    }
                    other => panic!("in pieces of {piece}: {other:?}"),
                }
            }
            unreachable!()
        };
        let cut = body.find("<name>ready</name>").unwrap();
        assert_eq!(
            error(&body.as_bytes()[..cut], &names),
            "the response broke off inside result 1 of 3"
        );
        let end = body.find("</data></array></value>\n</param>").unwrap();
        assert_eq!(
            error(&body.as_bytes()[..end + 7], &names),
            "the response broke off after the results"
        );
        assert!(
            error(format!("{body}<extra/>").as_bytes(), &names)
                .starts_with("after the multicall's results")
        );
        let mut bytes = body.clone().into_bytes();
        let at = body.find(&exports[1].name).unwrap();
        bytes[at] = 0xff;
        assert!(error(&bytes, &names).contains("not UTF-8"));
        let mut bytes = body.clone().into_bytes();
        let at = body.find("<name>version</name>").unwrap() + 7;
        bytes[at] = 0xff;
        assert!(
            error(&bytes, &names).contains("not UTF-8"),
            "in a skipped member too"
        );
        let two = names[..2].to_vec();
        assert_eq!(error(body.as_bytes(), &two), "3 answers");
        let with_doctype = body.replacen("<struct>", "<struct><!DOCTYPE x>", 1);
        assert!(error(with_doctype.as_bytes(), &names).contains("declaration"));
        let bad_xml = body.replacen("<struct>", "<struct><member></struct>", 1);
        assert!(error(bad_xml.as_bytes(), &names).starts_with("result 1 of the multicall"));
    }

    #[test]
    fn memory_is_bounded_by_a_batch_and_a_result_not_by_the_body() {
        let exports = generated(2_000);
        let (body, names) = multicall_of(&exports);
        let piece = 16 * 1024;
        let largest = exports
            .iter()
            .map(|e| py::value(&e.py()).len())
            .max()
            .unwrap();
        let mut decoder = WorkerInfos::new(&names);
        for part in body.as_bytes().chunks(piece) {
            decoder.take(part).unwrap();
        }
        let held = decoder.held();
        assert!(
            held <= BATCH + piece + largest + 200,
            "held {held} bytes of a {} byte body",
            body.len()
        );
        assert!(body.len() > 20 * held, "the body is {} bytes", body.len());
        match decoder.finish().unwrap() {
            Decoded::Answers(answers) => assert_eq!(answers.len(), 2_000),
            Decoded::Whole(_) => panic!("read whole"),
        }
    }

    #[test]
    fn entities_and_character_references() {
        assert_eq!(
            unescape("a&amp;b&lt;&gt;&quot;&apos;").as_deref(),
            Some("a&b<>\"'")
        );
        assert_eq!(unescape("&#46;&#x2d;&#x1F600;").as_deref(), Some(".-😀"));
        for bad in ["&nbsp;", "&#0;", "&#xD800;", "&amp", "&#xZZ;", "&#x;"] {
            assert_eq!(unescape(bad), None, "{bad}");
        }
    }
}
