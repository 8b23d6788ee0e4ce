//! Bounded JSON lines (`--max-line BYTES`): every line a log shipper reads
//! up to its `\n` is at most BYTES long, the newline included.
//!
//! A record whose line fits is written exactly as without the option. One
//! that does not is written as parts, each a JSON object on its own line:
//!
//! - every part repeats the record's identity (`seq`, `time`, `kind`,
//!   `epoch`, `pid`, those it has) and says `part` (from 1) and `parts`;
//! - part 1 holds every other field that is not a list (`cwd`, `stats`,
//!   `backend` …) and every list of the record, each with the entries that
//!   fit (perhaps none), so it has the record's shape;
//! - the lists are the arrays among the record's fields (`files`,
//!   `skipped`, `paths`, a baseline's `maps`) and the arrays of a field
//!   whose value is an object of arrays (a sample's `maps.added`,
//!   `maps.removed`); later parts carry only the lists they add entries
//!   to, and always whole entries, in order.
//!
//! Joining the parts of a seq ([`join`]) gives back the record: part 1,
//! without `part` and `parts`, with each later part's entries appended to
//! the same list.
//!
//! An entry too large for any line (one file's diff of a megabyte) is
//! replaced by a summary object with `"truncated": true`:
//!
//! - for an entry with `forward`/`reverse` diffs, its other fields (path,
//!   change, node, old and new hash, modes, writers) and, for each diff,
//!   `forward_bytes`, `forward_lines`, `forward_hash` (and the same for
//!   `reverse`): the length in bytes and lines of the diff text it replaces
//!   and its xxh3-64 as 16 hex digits, like every hash monitord writes;
//! - for any other value, its fields if it is an object, and `json_bytes`,
//!   `json_hash`: the length and xxh3-64 of the compact JSON it replaces;
//! - if the summary is still too long (paths of thousands of bytes under a
//!   small limit), its largest fields are left out, named in `omitted`, and
//!   `json_bytes`/`json_hash` cover the whole entry.
//!
//! A field of part 1 too long for it is replaced by a summary the same way.
//! Nothing is ever cut inside a JSON value, so every line parses.

use std::ops::Range;

use serde_json::{Map, Value};

use super::json;

/// The smallest `--max-line`: room for a part's identity, `part`/`parts`,
/// a list's name and an entry's summary, with a margin.
pub const MIN_LINE: usize = 1024;

/// The fields every part repeats.
pub const IDENTITY: [&str; 5] = ["seq", "time", "kind", "epoch", "pid"];

/// Write `value` as JSON Lines into `out`: one line ending in `\n`, or,
/// when `max_line` is given and the line (with its newline) would be longer,
/// the parts described in the module documentation, each no longer.
///
/// # Errors
/// When serde_json fails to serialize (it does not for a [`Value`]).
pub fn write_lines(value: &Value, max_line: Option<usize>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value)?;
    match max_line {
        Some(limit) if out.len() - start + 1 > limit => {
            out.truncate(start);
            split(value, limit, out)
        }
        _ => {
            out.push(b'\n');
            Ok(())
        }
    }
}

/// Join the parts of one record (as parsed from their lines, in any
/// order) back into the record: `None` when parts are missing, repeated or
/// disagree on `parts`.
pub fn join(parts: &[Value]) -> Option<Value> {
    let count = parts.first()?.get("parts")?.as_u64()?;
    let mut sorted: Vec<&Value> = parts.iter().collect();
    sorted.sort_by_key(|p| p.get("part").and_then(Value::as_u64));
    let numbers: Vec<Option<u64>> = sorted.iter().map(|p| p.get("part").and_then(Value::as_u64)).collect();
    let expected: Vec<Option<u64>> = (1..=count).map(Some).collect();
    if numbers != expected || sorted.iter().any(|p| p.get("parts").and_then(Value::as_u64) != Some(count)) {
        return None;
    }
    let mut record = sorted[0].as_object()?.clone();
    record.remove("part");
    record.remove("parts");
    for part in &sorted[1..] {
        for (key, value) in part.as_object()? {
            if IDENTITY.contains(&key.as_str()) || key == "part" || key == "parts" {
                continue;
            }
            match (record.get_mut(key)?, value) {
                (Value::Array(into), Value::Array(more)) => into.extend(more.iter().cloned()),
                (Value::Object(into), Value::Object(more)) => {
                    for (sub, value) in more {
                        into.get_mut(sub)?.as_array_mut()?.extend(value.as_array()?.iter().cloned());
                    }
                }
                _ => return None,
            }
        }
    }
    Some(Value::Object(record))
}

/// A list of entries the parts share out: a field's array, or an array
/// inside a field's object.
struct List<'a> {
    /// `"name"`, as JSON.
    key: Vec<u8>,
    /// The entries.
    values: &'a [Value],
    /// Their compact JSON.
    entries: Vec<Vec<u8>>,
    /// The summary that replaces an entry too long for a part of its own.
    summaries: Vec<Option<Vec<u8>>>,
}

impl List<'_> {
    /// Entry `n` as it is written: itself, or its summary.
    fn entry(&self, n: usize) -> &[u8] {
        self.summaries[n].as_deref().unwrap_or(&self.entries[n])
    }
}

/// A field of the record, in output order.
enum Item<'a> {
    /// `"key":value` as JSON, in every part.
    Identity(Vec<u8>),
    /// `"key":value` as JSON, in part 1 only.
    Scalar {
        /// `"key"`.
        key: Vec<u8>,
        /// The value, for its summary.
        value: &'a Value,
        /// `"key":value`, or `"key":summary`.
        json: Vec<u8>,
        /// Whether `json` holds the summary.
        summarised: bool,
    },
    /// A list field (index into [`Layout::lists`]).
    List(usize),
    /// An object field of lists: its key and its lists.
    Group(Vec<u8>, Vec<usize>),
}

/// The record taken apart into what the parts are made of.
struct Layout<'a> {
    items: Vec<Item<'a>>,
    lists: Vec<List<'a>>,
}

/// Per list: how many entries a part holds and their total length.
type Fill = Vec<(usize, usize)>;

fn key_json(key: &str) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(key)
}

fn field_json(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1 + value.len());
    out.extend_from_slice(key);
    out.push(b':');
    out.extend_from_slice(value);
    out
}

impl<'a> Layout<'a> {
    fn new(record: &'a Map<String, Value>) -> serde_json::Result<Layout<'a>> {
        let mut layout = Layout { items: Vec::new(), lists: Vec::new() };
        let list = |key: &str, values: &'a [Value]| -> serde_json::Result<List<'a>> {
            Ok(List {
                key: key_json(key)?,
                values,
                entries: values.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?,
                summaries: vec![None; values.len()],
            })
        };
        for (key, value) in record {
            if IDENTITY.contains(&key.as_str()) {
                layout.items.push(Item::Identity(field_json(&key_json(key)?, &serde_json::to_vec(value)?)));
                continue;
            }
            match value {
                Value::Array(values) => {
                    layout.lists.push(list(key, values)?);
                    layout.items.push(Item::List(layout.lists.len() - 1));
                }
                Value::Object(fields) if !fields.is_empty() && fields.values().all(Value::is_array) => {
                    let mut members = Vec::new();
                    for (sub, values) in fields {
                        layout.lists.push(list(sub, values.as_array().map_or(&[], Vec::as_slice))?);
                        members.push(layout.lists.len() - 1);
                    }
                    layout.items.push(Item::Group(key_json(key)?, members));
                }
                _ => {
                    let key = key_json(key)?;
                    let json = field_json(&key, &serde_json::to_vec(value)?);
                    layout.items.push(Item::Scalar { key, value, json, summarised: false });
                }
            }
        }
        Ok(layout)
    }

    /// The length of a part's line (without its newline) holding `fill`,
    /// with `part`/`parts` of `digits` digits. Mirrors [`Layout::write`].
    fn len(&self, first: bool, digits: usize, fill: &Fill) -> usize {
        let list_len = |i: usize| {
            let (count, bytes) = fill[i];
            self.lists[i].key.len() + 1 + 2 + bytes + count.saturating_sub(1)
        };
        let shown = |i: usize| first || fill[i].0 > 0;
        // The braces, `"part":N` and `"parts":N`.
        let mut len = 2 + 7 + digits + 8 + digits;
        let mut fields = 2;
        for item in &self.items {
            match item {
                Item::Identity(json) => {
                    len += json.len();
                    fields += 1;
                }
                Item::Scalar { json, .. } if first => {
                    len += json.len();
                    fields += 1;
                }
                Item::Scalar { .. } => {}
                Item::List(i) if shown(*i) => {
                    len += list_len(*i);
                    fields += 1;
                }
                Item::List(_) => {}
                Item::Group(key, members) => {
                    let present = members.iter().filter(|&&i| shown(i)).count();
                    if first || present > 0 {
                        let lists: usize = members.iter().filter(|&&i| shown(i)).map(|&i| list_len(i)).sum();
                        len += key.len() + 1 + 2 + lists + present.saturating_sub(1);
                        fields += 1;
                    }
                }
            }
        }
        len + fields - 1
    }

    /// Write one part, `ranges` being the entries of each list it holds,
    /// and its newline.
    fn write(&self, part: usize, parts: usize, ranges: &[Range<usize>], out: &mut Vec<u8>) {
        let first = part == 1;
        let shown = |i: usize| first || !ranges[i].is_empty();
        let list = |i: usize, out: &mut Vec<u8>| {
            out.extend_from_slice(&self.lists[i].key);
            out.extend_from_slice(b":[");
            for n in ranges[i].clone() {
                if n > ranges[i].start {
                    out.push(b',');
                }
                out.extend_from_slice(self.lists[i].entry(n));
            }
            out.push(b']');
        };
        out.push(b'{');
        for item in &self.items {
            if let Item::Identity(json) = item {
                out.extend_from_slice(json);
                out.push(b',');
            }
        }
        out.extend_from_slice(format!("\"part\":{part},\"parts\":{parts}").as_bytes());
        for item in &self.items {
            match item {
                Item::Identity(_) => {}
                Item::Scalar { json, .. } => {
                    if first {
                        out.push(b',');
                        out.extend_from_slice(json);
                    }
                }
                Item::List(i) => {
                    if shown(*i) {
                        out.push(b',');
                        list(*i, out);
                    }
                }
                Item::Group(key, members) => {
                    if first || members.iter().any(|&i| shown(i)) {
                        out.push(b',');
                        out.extend_from_slice(key);
                        out.extend_from_slice(b":{");
                        for (n, &i) in members.iter().filter(|&&i| shown(i)).enumerate() {
                            if n > 0 {
                                out.push(b',');
                            }
                            list(i, out);
                        }
                        out.push(b'}');
                    }
                }
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Summarise the largest fields of part 1 until it fits `limit` with
    /// no entries (or none is left to summarise).
    fn fit_part_one(&mut self, limit: usize, digits: usize) -> serde_json::Result<()> {
        let none: Fill = vec![(0, 0); self.lists.len()];
        while self.len(true, digits, &none) + 1 > limit {
            let largest = self
                .items
                .iter_mut()
                .filter(|item| matches!(item, Item::Scalar { summarised: false, .. }))
                .max_by_key(|item| match item {
                    Item::Scalar { json, .. } => json.len(),
                    _ => 0,
                });
            let Some(Item::Scalar { key, value, json, summarised }) = largest else { return Ok(()) };
            *json = field_json(key, &summary(value, MIN_LINE / 4)?);
            *summarised = true;
        }
        Ok(())
    }

    /// Replace each entry too long for a part of its own by its summary.
    fn fit_entries(&mut self, limit: usize, digits: usize) -> serde_json::Result<()> {
        let none: Fill = vec![(0, 0); self.lists.len()];
        for i in 0..self.lists.len() {
            let mut alone = none.clone();
            alone[i] = (1, 0);
            let room = limit.saturating_sub(1 + self.len(false, digits, &alone));
            let list = &mut self.lists[i];
            for n in 0..list.entries.len() {
                list.summaries[n] =
                    if list.entries[n].len() <= room { None } else { Some(summary(&list.values[n], room)?) };
            }
        }
        Ok(())
    }

    /// Share the entries out: fill each part in list order, open the next
    /// when the entry does not fit. The entries of each list per part.
    fn pack(&self, limit: usize, digits: usize) -> Vec<Vec<Range<usize>>> {
        let none: Fill = vec![(0, 0); self.lists.len()];
        let empty = vec![0..0; self.lists.len()];
        let mut parts = Vec::new();
        let mut ranges = empty.clone();
        let mut fill = none.clone();
        for (i, list) in self.lists.iter().enumerate() {
            for n in 0..list.entries.len() {
                let len = list.entry(n).len();
                let mut grown = fill.clone();
                grown[i] = (fill[i].0 + 1, fill[i].1 + len);
                let first = parts.is_empty();
                let holds_entries = fill.iter().any(|f| f.0 > 0);
                if self.len(first, digits, &grown) + 1 > limit && (first || holds_entries) {
                    parts.push(std::mem::replace(&mut ranges, empty.clone()));
                    grown = none.clone();
                    grown[i] = (1, len);
                }
                if ranges[i].is_empty() {
                    ranges[i] = n..n;
                }
                ranges[i].end = n + 1;
                fill = grown;
            }
        }
        parts.push(ranges);
        parts
    }
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Write `value` as parts of at most `limit` bytes per line.
fn split(value: &Value, limit: usize, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let Some(record) = value.as_object() else {
        // Not a record: nothing to share out, only to summarise.
        out.extend_from_slice(&summary(value, limit.saturating_sub(1))?);
        out.push(b'\n');
        return Ok(());
    };
    let mut layout = Layout::new(record)?;
    // `part` and `parts` are reckoned with `d` digits: more parts than
    // that holds means packing again with room for one more digit.
    let mut d = 1;
    loop {
        layout.fit_part_one(limit, d)?;
        layout.fit_entries(limit, d)?;
        let parts = layout.pack(limit, d);
        if digits(parts.len()) > d {
            d = digits(parts.len());
            continue;
        }
        for (k, ranges) in parts.iter().enumerate() {
            layout.write(k + 1, parts.len(), ranges, out);
        }
        return Ok(());
    }
}

fn hash_hex(bytes: &[u8]) -> Value {
    Value::String(format!("{:016x}", crate::diff::hash(bytes)))
}

/// Lines of a text: its newlines, plus one for an unterminated last line.
fn line_count(text: &[u8]) -> usize {
    let newlines = memchr::memchr_iter(b'\n', text).count();
    newlines + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}

/// The summary of a value too long for a line, at most `room` bytes of
/// JSON if leaving out its fields gets it there.
fn summary(value: &Value, room: usize) -> serde_json::Result<Vec<u8>> {
    let compact = serde_json::to_vec(value)?;
    let whole = |map: &mut Map<String, Value>| {
        map.insert("json_bytes".into(), Value::from(compact.len()));
        map.insert("json_hash".into(), hash_hex(&compact));
    };
    let mut map = Map::new();
    let mut added: Vec<&str> = vec!["truncated"];
    let encoded_bytes = value.as_object().is_some_and(|m| m.len() == 1 && m.contains_key("bytes"));
    match value {
        Value::Object(fields) if !encoded_bytes => {
            map = fields.clone();
            let diffs: Vec<&str> =
                ["forward", "reverse"].into_iter().filter(|k| fields.contains_key(*k)).collect();
            if diffs.is_empty() {
                whole(&mut map);
                added.extend(["json_bytes", "json_hash"]);
            }
            for name in diffs {
                let text = map.remove(name).map(|v| json::parse_bytes(&v).unwrap_or_default()).unwrap_or_default();
                let keys = diff_keys(name);
                map.insert(keys[0].into(), Value::from(text.len()));
                map.insert(keys[1].into(), Value::from(line_count(&text)));
                map.insert(keys[2].into(), hash_hex(&text));
                added.extend(keys);
            }
        }
        _ => {
            whole(&mut map);
            added.extend(["json_bytes", "json_hash"]);
        }
    }
    map.insert("truncated".into(), Value::Bool(true));
    loop {
        let json = serde_json::to_vec(&map)?;
        if json.len() <= room {
            return Ok(json);
        }
        let largest = map
            .iter()
            .filter(|(k, _)| !added.contains(&k.as_str()) && k.as_str() != "omitted")
            .map(|(k, v)| (k.clone(), serde_json::to_vec(v).map_or(0, |j| j.len())))
            .max_by_key(|(_, len)| *len);
        let Some((key, _)) = largest else { return Ok(json) };
        map.remove(&key);
        if !map.contains_key("json_bytes") {
            whole(&mut map);
            added.extend(["json_bytes", "json_hash"]);
        }
        if let Value::Array(names) = map.entry("omitted").or_insert_with(|| Value::Array(Vec::new())) {
            names.push(Value::String(key));
        }
    }
}

fn diff_keys(name: &str) -> [&'static str; 3] {
    if name == "forward" {
        ["forward_bytes", "forward_lines", "forward_hash"]
    } else {
        ["reverse_bytes", "reverse_lines", "reverse_hash"]
    }
}
