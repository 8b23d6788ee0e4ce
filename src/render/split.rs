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
    match (max_line, value.as_object()) {
        (None, _) => {
            serde_json::to_writer(&mut *out, value)?;
            out.push(b'\n');
        }
        (Some(limit), Some(record)) => {
            let start = out.len();
            serde_json::to_writer(&mut *out, value)?;
            if out.len() - start < limit {
                out.push(b'\n');
            } else {
                // Too long: serialised again, noting where each field and
                // entry lies, and split from those bytes.
                out.truncate(start);
                split(&mut Layout::new(record)?, limit, out)?;
            }
        }
        (Some(limit), None) => {
            let mut json = serde_json::to_vec(value)?;
            if json.len() >= limit {
                // Not a record: nothing to share out, only to summarise.
                json = summary(value, limit.saturating_sub(1))?;
            }
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    Ok(())
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
    /// Where each entry's compact JSON lies in [`Layout::json`].
    entries: Vec<Range<usize>>,
    /// The summary that replaces an entry too long for a part of its own.
    summaries: Vec<Option<Vec<u8>>>,
}

/// A field of the record, in output order.
enum Item<'a> {
    /// `"key":value`, in every part: where it lies in [`Layout::json`].
    Identity(Range<usize>),
    /// A field in part 1 only.
    Scalar {
        /// `"key"`.
        key: Vec<u8>,
        /// The value, for its summary.
        value: &'a Value,
        /// Where `"key":value` lies in [`Layout::json`].
        field: Range<usize>,
        /// `"key":summary`, when the field is too long for part 1.
        summary: Option<Vec<u8>>,
    },
    /// A list field (index into [`Layout::lists`]).
    List(usize),
    /// An object field of lists: its key and its lists.
    Group(Vec<u8>, Vec<usize>),
}

/// The record serialised, and taken apart into what parts are made of.
struct Layout<'a> {
    /// The record's compact JSON, as serde_json writes it.
    json: Vec<u8>,
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

/// Whether a field's value is an object of lists (a sample's `maps`).
fn is_group(value: &Value) -> bool {
    value.as_object().is_some_and(|fields| !fields.is_empty() && fields.values().all(Value::is_array))
}

impl<'a> Layout<'a> {
    /// Serialise `record` compactly, byte for byte as serde_json does,
    /// noting where each field and each list entry lies.
    fn new(record: &'a Map<String, Value>) -> serde_json::Result<Layout<'a>> {
        let mut layout = Layout { json: Vec::new(), items: Vec::new(), lists: Vec::new() };
        let json = &mut layout.json;
        let list = |key: Vec<u8>, values: &'a [Value], json: &mut Vec<u8>| -> serde_json::Result<List<'a>> {
            json.extend_from_slice(&key);
            json.extend_from_slice(b":[");
            let mut entries = Vec::with_capacity(values.len());
            for (n, value) in values.iter().enumerate() {
                if n > 0 {
                    json.push(b',');
                }
                let start = json.len();
                serde_json::to_writer(&mut *json, value)?;
                entries.push(start..json.len());
            }
            json.push(b']');
            Ok(List { key, values, entries, summaries: vec![None; values.len()] })
        };
        json.push(b'{');
        for (n, (key, value)) in record.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            let start = json.len();
            let key_bytes = key_json(key)?;
            if IDENTITY.contains(&key.as_str()) || !(value.is_array() || is_group(value)) {
                json.extend_from_slice(&key_bytes);
                json.push(b':');
                serde_json::to_writer(&mut *json, value)?;
                layout.items.push(if IDENTITY.contains(&key.as_str()) {
                    Item::Identity(start..json.len())
                } else {
                    Item::Scalar { key: key_bytes, value, field: start..json.len(), summary: None }
                });
            } else if let Value::Array(values) = value {
                layout.lists.push(list(key_bytes, values, json)?);
                layout.items.push(Item::List(layout.lists.len() - 1));
            } else if let Value::Object(fields) = value {
                json.extend_from_slice(&key_bytes);
                json.extend_from_slice(b":{");
                let mut members = Vec::new();
                for (m, (sub, values)) in fields.iter().enumerate() {
                    if m > 0 {
                        json.push(b',');
                    }
                    let values = values.as_array().map_or(&[][..], Vec::as_slice);
                    layout.lists.push(list(key_json(sub)?, values, json)?);
                    members.push(layout.lists.len() - 1);
                }
                json.push(b'}');
                layout.items.push(Item::Group(key_bytes, members));
            }
        }
        json.push(b'}');
        Ok(layout)
    }

    /// Entry `n` of list `i` as it is written: itself, or its summary.
    fn entry(&self, i: usize, n: usize) -> &[u8] {
        let list = &self.lists[i];
        list.summaries[n].as_deref().unwrap_or(&self.json[list.entries[n].clone()])
    }

    /// A field of part 1 as it is written: itself, or its summary.
    fn scalar<'s>(&'s self, item: &'s Item<'_>) -> &'s [u8] {
        match item {
            Item::Identity(field) => &self.json[field.clone()],
            Item::Scalar { field, summary, .. } => summary.as_deref().unwrap_or(&self.json[field.clone()]),
            Item::List(_) | Item::Group(..) => &[],
        }
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
                Item::Identity(_) => {
                    len += self.scalar(item).len();
                    fields += 1;
                }
                Item::Scalar { .. } if first => {
                    len += self.scalar(item).len();
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
                out.extend_from_slice(self.entry(i, n));
            }
            out.push(b']');
        };
        out.push(b'{');
        for item in &self.items {
            if let Item::Identity(_) = item {
                out.extend_from_slice(self.scalar(item));
                out.push(b',');
            }
        }
        out.extend_from_slice(format!("\"part\":{part},\"parts\":{parts}").as_bytes());
        for item in &self.items {
            match item {
                Item::Identity(_) => {}
                Item::Scalar { .. } => {
                    if first {
                        out.push(b',');
                        out.extend_from_slice(self.scalar(item));
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
            let largest = (0..self.items.len())
                .filter(|&k| matches!(self.items[k], Item::Scalar { summary: None, .. }))
                .max_by_key(|&k| self.scalar(&self.items[k]).len());
            let Some(k) = largest else { return Ok(()) };
            if let Item::Scalar { key, value, summary: slot, .. } = &mut self.items[k] {
                *slot = Some(field_json(key, &summary(value, MIN_LINE / 4)?));
            }
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
                let len = self.entry(i, n).len();
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

/// Write the record laid out in `layout` as parts of at most `limit`
/// bytes per line.
fn split(layout: &mut Layout<'_>, limit: usize, out: &mut Vec<u8>) -> serde_json::Result<()> {
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
                let text =
                    map.remove(name).map(|v| json::parse_bytes(&v).unwrap_or_default()).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{
        Baseline, Body, Change, FileChange, FileEntry, MapsDelta, Node, Record, Sample, SkipReason, Skipped,
        Stats, Writer, Writers,
    };

    /// The lines written for `value` under `limit`.
    fn lines(value: &Value, limit: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        write_lines(value, Some(limit), &mut out).unwrap();
        assert_eq!(out.last(), Some(&b'\n'), "every line ends in a newline");
        out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
    }

    /// The fields a summary adds to what it keeps of the entry.
    const ADDED: [&str; 10] = [
        "truncated",
        "forward_bytes",
        "forward_lines",
        "forward_hash",
        "reverse_bytes",
        "reverse_lines",
        "reverse_hash",
        "json_bytes",
        "json_hash",
        "omitted",
    ];

    fn text_of(value: &Value) -> Vec<u8> {
        json::parse_bytes(value).unwrap()
    }

    /// Whether `summary` honestly says what it replaced: the original's
    /// fields it keeps are equal, the ones it left out are named, and the
    /// counts and hashes are those of the original.
    fn describes(summary: &Value, original: &Value) -> Result<(), String> {
        let s = summary.as_object().ok_or("a summary is an object")?;
        if s.get("truncated") != Some(&json!(true)) {
            return Err(format!("{summary} is not marked truncated"));
        }
        let compact = serde_json::to_vec(original).unwrap();
        if let Some(n) = s.get("json_bytes")
            && (n != &json!(compact.len()) || s["json_hash"] != hash_hex(&compact))
        {
            return Err(format!("{summary}: json_bytes/json_hash do not match the original"));
        }
        let omitted: Vec<&str> = s
            .get("omitted")
            .and_then(Value::as_array)
            .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect());
        match original.as_object() {
            Some(o) if !(o.len() == 1 && o.contains_key("bytes")) => {
                for (key, value) in o {
                    if key == "forward" || key == "reverse" {
                        let text = text_of(value);
                        if s[&format!("{key}_bytes")] != json!(text.len())
                            || s[&format!("{key}_lines")] != json!(line_count(&text))
                            || s[&format!("{key}_hash")] != hash_hex(&text)
                        {
                            return Err(format!("{summary}: the {key} figures do not match"));
                        }
                    } else if omitted.contains(&key.as_str()) {
                        if s.contains_key(key) {
                            return Err(format!("{key} is both kept and omitted"));
                        }
                    } else if s.get(key) != Some(value) {
                        return Err(format!("{summary} changed field {key}"));
                    }
                }
                for key in s.keys() {
                    if !ADDED.contains(&key.as_str()) && !o.contains_key(key) {
                        return Err(format!("{summary} invented field {key}"));
                    }
                }
                if !s.contains_key("json_bytes") && !o.contains_key("forward") && !o.contains_key("reverse") {
                    return Err(format!("{summary} does not say what it replaced"));
                }
                Ok(())
            }
            _ if s.contains_key("json_bytes") => Ok(()),
            _ => Err(format!("{summary} does not say what it replaced")),
        }
    }

    /// Compare the joined record with the original: equal, except values
    /// replaced by summaries that describe them. Returns how many there are.
    fn compare(joined: &Value, original: &Value) -> Result<usize, String> {
        let (j, o) = (joined.as_object().unwrap(), original.as_object().unwrap());
        if j.keys().ne(o.keys()) {
            return Err(format!(
                "fields differ: {:?} vs {:?}",
                j.keys().collect::<Vec<_>>(),
                o.keys().collect::<Vec<_>>()
            ));
        }
        let mut summaries = 0;
        let entries = |a: &Vec<Value>, b: &Vec<Value>| -> Result<usize, String> {
            if a.len() != b.len() {
                return Err(format!("a list has {} entries joined, {} recorded", a.len(), b.len()));
            }
            let mut summaries = 0;
            for (x, y) in a.iter().zip(b) {
                if x != y {
                    describes(x, y)?;
                    summaries += 1;
                }
            }
            Ok(summaries)
        };
        for (key, value) in o {
            match (&j[key], value) {
                (Value::Array(a), Value::Array(b)) => summaries += entries(a, b)?,
                (Value::Object(a), Value::Object(b)) if b.values().all(Value::is_array) && !b.is_empty() => {
                    for (sub, list) in b {
                        summaries += entries(
                            a[sub].as_array().ok_or("a list became something else")?,
                            list.as_array().unwrap(),
                        )?;
                    }
                }
                (x, y) if x == y => {}
                (x, y) => {
                    describes(x, y)?;
                    summaries += 1;
                }
            }
        }
        Ok(summaries)
    }

    /// Split `value` under `limit` and check every promise: bounded lines
    /// that parse, the identity in every part, parts numbered 1..=parts,
    /// and a join that gives back the record but for honest summaries.
    fn check(value: &Value, limit: usize) -> Result<usize, String> {
        let layout = Layout::new(value.as_object().unwrap()).unwrap();
        if layout.json != serde_json::to_vec(value).unwrap() {
            return Err("the layout's JSON is not serde_json's".into());
        }
        let lines = lines(value, limit);
        let mut parsed = Vec::new();
        for line in &lines {
            if line.len() + 1 > limit {
                return Err(format!("a line of {} bytes under --max-line {limit}", line.len() + 1));
            }
            parsed
                .push(serde_json::from_slice::<Value>(line).map_err(|e| format!("a line is not JSON: {e}"))?);
        }
        if parsed.len() == 1 && parsed[0].get("part").is_none() {
            // A record that fits is written byte for byte as without the option.
            let plain = serde_json::to_vec(value).unwrap();
            return if lines[0] == plain { Ok(0) } else { Err("a single line changed the record".into()) };
        }
        for part in &parsed {
            for key in IDENTITY {
                if part.get(key) != value.get(key) {
                    return Err(format!("part {} does not repeat {key}", part["part"]));
                }
            }
            if part["parts"] != json!(parsed.len()) {
                return Err(format!("parts says {}, {} written", part["parts"], parsed.len()));
            }
        }
        let numbers: Vec<&Value> = parsed.iter().map(|p| &p["part"]).collect();
        if numbers != (1..=parsed.len()).map(|n| json!(n)).collect::<Vec<_>>().iter().collect::<Vec<_>>() {
            return Err(format!("parts out of order: {numbers:?}"));
        }
        let joined = join(&parsed).ok_or("the parts do not join")?;
        compare(&joined, value)
    }

    fn sample_value(files: Vec<FileChange>, maps: MapsDelta, writers: Vec<Writers>) -> Value {
        let record = Record {
            version: crate::journal::record::FORMAT_VERSION,
            epoch: 1,
            pid: 4242,
            body: Body::Sample(Sample {
                files,
                skipped: vec![Skipped {
                    path: b"big.log".to_vec(),
                    reason: SkipReason::TooLarge { size: 9 << 20 },
                }],
                maps,
                stats: Some(Stats { utime_ms: 1, stime_ms: 2, rss_kib: 3, vsz_kib: 4, threads: 5, fds: 6 }),
                writers,
            }),
        };
        json::record(17, 1_764_000_000_123_456, &record)
    }

    fn change(path: &[u8], old: &[u8], new: &[u8]) -> FileChange {
        let patch = Patch::compute(old, new, Duration::from_secs(5));
        FileChange::new(path.to_vec(), Change::Modified, None, Node::File, patch)
    }

    #[test]
    fn a_record_that_fits_is_written_as_without_the_option() {
        let value = sample_value(vec![change(b"a.txt", b"a\n", b"b\n")], MapsDelta::default(), vec![]);
        let mut plain = Vec::new();
        write_lines(&value, None, &mut plain).unwrap();
        let mut bounded = Vec::new();
        write_lines(&value, Some(MIN_LINE), &mut bounded).unwrap();
        assert_eq!(plain, bounded);
        assert_eq!(plain, [serde_json::to_vec(&value).unwrap(), b"\n".to_vec()].concat());
    }

    #[test]
    fn many_files_are_shared_out_in_order_and_join_back_exactly() {
        let files: Vec<FileChange> = (0..200)
            .map(|i| {
                change(format!("dir/file-{i}.txt").as_bytes(), b"old\n", format!("new {i}\n").as_bytes())
            })
            .collect();
        let maps = MapsDelta {
            added: (0..100)
                .map(|i| {
                    format!("7f{i:010x}-7f{i:010x} r--p 00000000 08:01 {i} /usr/lib/lib{i}.so").into_bytes()
                })
                .collect(),
            removed: vec![b"\xff not utf-8".to_vec()],
        };
        let value = sample_value(files, maps, vec![]);
        let lines = lines(&value, 2000);
        assert!(lines.len() > 10, "{} lines", lines.len());
        assert_eq!(check(&value, 2000), Ok(0), "no summaries when every entry fits");
        let first: Value = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(first["stats"], value["stats"], "part 1 holds the other fields");
        assert!(first["maps"]["added"].is_array() && first["maps"]["removed"].is_array());
        let second: Value = serde_json::from_slice(&lines[1]).unwrap();
        assert!(second.get("stats").is_none(), "only part 1 holds them");
    }

    #[test]
    fn a_diff_too_long_for_any_line_is_summarised() {
        let old: Vec<u8> = (0..2000).flat_map(|i| format!("old line {i}\n").into_bytes()).collect();
        let new: Vec<u8> = (0..2000).flat_map(|i| format!("new line {i}\n").into_bytes()).collect();
        let mut big = change(b"big\xe9.txt", &old, &new);
        big.mode = Some(0o755);
        big.old_mode = Some(0o644);
        let files = vec![change(b"small.txt", b"a\n", b"b\n"), big];
        let writers = vec![Writers {
            path: b"big\xe9.txt".to_vec(),
            pids: vec![7],
            foreign: false,
            who: vec![Writer {
                pid: 7,
                comm: Some("sed".into()),
                exe: Some(b"/usr/bin/sed".to_vec()),
                uid: Some(0),
                target: true,
            }],
        }];
        let value = sample_value(files, MapsDelta::default(), writers);
        assert_eq!(check(&value, 8000), Ok(1));
        let parts: Vec<Value> =
            lines(&value, 8000).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        let summary = &join(&parts).unwrap()["files"][1];
        assert_eq!(summary["truncated"], json!(true));
        assert_eq!(summary["path"], json!({"bytes": "Ymln6S50eHQ="}));
        assert_eq!(summary["mode"], json!("0755"));
        assert_eq!(summary["writers"][0]["comm"], json!("sed"));
        assert_eq!(summary["forward_lines"], json!(4003), "a hunk header, two file names, 4000 lines");
        assert!(summary.get("forward").is_none() && summary.get("omitted").is_none());
    }

    #[test]
    fn a_summary_too_long_leaves_out_its_largest_fields_and_says_so() {
        let path = vec![b'p'; 3000];
        let old: Vec<u8> = (0..200).flat_map(|i| format!("old line {i}\n").into_bytes()).collect();
        let value = sample_value(vec![change(&path, &old, b"")], MapsDelta::default(), vec![]);
        assert_eq!(check(&value, MIN_LINE), Ok(1));
        let parts: Vec<Value> =
            lines(&value, MIN_LINE).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        let summary = &join(&parts).unwrap()["files"][0];
        assert_eq!(summary["omitted"], json!(["path"]));
        assert_eq!(summary["change"], json!("modified"));
    }

    #[test]
    fn a_long_field_of_part_one_is_summarised() {
        let record = Record {
            version: crate::journal::record::FORMAT_VERSION,
            epoch: 3,
            pid: 1,
            body: Body::Cwd { old: vec![b'\xff'; 2000], new: b"/".to_vec() },
        };
        let value = json::record(3, 0, &record);
        assert_eq!(check(&value, MIN_LINE), Ok(1));
    }

    #[test]
    fn join_refuses_missing_parts() {
        let files: Vec<FileChange> =
            (0..100).map(|i| change(format!("f{i}").as_bytes(), b"", b"x\n")).collect();
        let value = sample_value(files, MapsDelta::default(), vec![]);
        let mut parts: Vec<Value> =
            lines(&value, 1500).iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert!(parts.len() > 2);
        parts.remove(1);
        assert_eq!(join(&parts), None);
    }

    /// A generator of pseudo-random numbers from a seed (generating each
    /// byte with proptest costs seconds for the large values).
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// `len` bytes drawn from `alphabet`.
    fn bytes(alphabet: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), len).prop_map(move |(seed, n)| {
            let mut next = xorshift(seed);
            (0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect()
        })
    }

    /// Paths, some not UTF-8, a few thousands of bytes long.
    fn path() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![8 => bytes(b"a/. \"\xe9\xff", 1..40), 1 => bytes(b"x\xff", 500..3000)]
    }

    /// Lines of text, `lines` of them.
    fn text(lines: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), lines).prop_map(|(seed, n)| {
            let mut next = xorshift(seed);
            let mut text = Vec::new();
            for _ in 0..n {
                let len = next() % 60;
                text.extend((0..len).map(|_| b"ab\t\xe9\\\"x "[(next() % 8) as usize]));
                text.push(b'\n');
            }
            text
        })
    }

    fn file_change() -> impl Strategy<Value = FileChange> {
        // A file created with thousands of lines makes a very large diff
        // that costs little to compute.
        let new = prop_oneof![4 => text(0..8), 2 => text(0..100), 1 => text(1000..4000)];
        (path(), text(0..30), new, 0..5u8, path()).prop_map(|(path, old, new, how, from)| {
            let (change, old, new, from) = match how {
                0 => (Change::Created, Vec::new(), new, None),
                1 => (Change::Deleted, old, Vec::new(), None),
                2 => (Change::Renamed, old, new.into_iter().take(4000).collect(), Some(from)),
                3 => (Change::Mode, old.clone(), old, None),
                _ => (Change::Modified, old, new.into_iter().take(4000).collect(), None),
            };
            let patch = Patch::compute(&old, &new, Duration::from_secs(5));
            let mut f = FileChange::new(path, change, from, Node::File, patch);
            if how == 3 {
                f.old_mode = Some(0o644);
                f.mode = Some(0o755);
            }
            f
        })
    }

    fn map_lines(n: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(
            path().prop_map(|p| [b"7f00-7f01 r-xp 00000000 08:01 12 /".to_vec(), p].concat()),
            0..n,
        )
    }

    fn sample() -> impl Strategy<Value = Value> {
        (proptest::collection::vec(file_change(), 0..12), map_lines(40), map_lines(40), any::<bool>())
            .prop_map(|(files, added, removed, named)| {
                let writers = if named {
                    files
                        .iter()
                        .map(|f| Writers {
                            path: f.path.clone(),
                            pids: vec![9],
                            foreign: false,
                            who: vec![Writer { pid: 9, ..Writer::default() }],
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                sample_value(files, MapsDelta { added, removed }, writers)
            })
    }

    fn baseline() -> impl Strategy<Value = Value> {
        (proptest::collection::vec((path(), any::<u64>(), any::<u64>()), 0..400), map_lines(200), path())
            .prop_map(|(files, maps, cwd)| {
                let record = Record {
                    version: crate::journal::record::FORMAT_VERSION,
                    epoch: 5,
                    pid: 77,
                    body: Body::Baseline(Baseline {
                        cwd,
                        starttime: 1,
                        files: files
                            .into_iter()
                            .map(|(path, size, hash)| FileEntry {
                                path,
                                node: Node::File,
                                size,
                                hash,
                                mode: 0o644,
                            })
                            .collect(),
                        skipped: vec![Skipped {
                            path: b"x".to_vec(),
                            reason: SkipReason::Unreadable { errno: 13 },
                        }],
                        maps,
                        stats: None,
                        backend: "inotify".into(),
                    }),
                };
                json::record(5, 1_764_000_000_000_001, &record)
            })
    }

    /// The longest entry of any list, and the longest other field.
    fn longest(value: &Value) -> usize {
        let mut most = 0;
        for (key, field) in value.as_object().unwrap() {
            let lists: Vec<&Vec<Value>> = match field {
                Value::Array(a) => vec![a],
                Value::Object(o) if o.values().all(Value::is_array) && !o.is_empty() => {
                    o.values().filter_map(Value::as_array).collect()
                }
                other => {
                    most = most.max(key.len() + serde_json::to_vec(other).unwrap().len());
                    continue;
                }
            };
            for entry in lists.into_iter().flatten() {
                most = most.max(serde_json::to_vec(entry).unwrap().len());
            }
        }
        most
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn parts_are_bounded_parse_and_join_back(
            value in prop_oneof![3 => sample(), 1 => baseline()],
            limit in prop_oneof![MIN_LINE..4096usize, 4096..200_000usize],
        ) {
            let checked = check(&value, limit);
            prop_assert!(checked.is_ok(), "{:?}", checked);
        }

        #[test]
        fn with_room_for_every_entry_the_join_is_exact(value in prop_oneof![sample(), baseline()], extra in 0..2000usize) {
            // Room for the longest entry and part 1's fields besides a
            // part's own fixed fields (a few hundred bytes at most).
            let fixed: usize = value.as_object().unwrap().iter()
                .filter(|(_, v)| !v.is_array() && !v.as_object().is_some_and(|o| !o.is_empty() && o.values().all(Value::is_array)))
                .map(|(k, v)| k.len() + 4 + serde_json::to_vec(v).unwrap().len())
                .sum();
            let limit = (longest(&value) + fixed + 300 + extra).max(MIN_LINE);
            prop_assert_eq!(check(&value, limit), Ok(0));
        }
    }
}
