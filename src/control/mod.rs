//! Control commands: the one parser shared by stdin (`-i`), the FIFO and `monitord ctl`.
//!
//! This module owns the command language of SPEC §4: [`Command`], [`parse`]
//! for one line of it, [`COMMANDS`] (the single table that `help`, the man
//! page and the tests are made from) and [`ParseError`]. It is pure: it takes
//! bytes and touches nothing. A line that does not parse is rejected whole,
//! with a one-line reason, so a bad command changes nothing.
//!
//! The grammar: one command per line, a lower-case word and at most one
//! argument, separated by ASCII whitespace; surrounding whitespace and a
//! final `\n` or `\r\n` are ignored. Numbers are plain decimal digits (no
//! sign, point or exponent) and must be in range.

pub mod client;
pub mod fifo;
pub mod wire;

use std::fmt;
use std::time::Duration;

/// Longest accepted line, in bytes (without the newline).
pub const MAX_LINE: usize = 4096;

/// Longest sampling period, in milliseconds (one day).
pub const MAX_PERIOD_MS: u64 = 86_400_000;

/// Most samples `history` can ask for.
pub const MAX_HISTORY: usize = 100_000;

/// Highest PID the kernel can hand out (`PID_MAX_LIMIT`).
pub const MAX_PID: i32 = 4_194_304;

/// One control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `period <ms>`: set the sampling period. Whole milliseconds, from 1 ms
    /// to [`MAX_PERIOD_MS`]; it displays as whole milliseconds.
    Period(Duration),
    /// `diff`: what changed since the last sample.
    Diff,
    /// `history <k>`: the diffs of the last k samples, newest last.
    History(usize),
    /// `pid <pid>`: follow another process from now on.
    Pid(i32),
    /// `status`: the monitor's state as `key: value` lines.
    Status,
    /// `pause`: stop sampling.
    Pause,
    /// `resume`: restart sampling.
    Resume,
    /// `sample`: take a sample now.
    Sample,
    /// `stop`: shut down cleanly.
    Stop,
    /// `help`: list the commands.
    Help,
    /// `mark <name>`: write a `mark` record, a point `@name` finds.
    Mark(String),
    /// `undo <json>`: put the live tree back to a point and record it (what
    /// `monitord undo` sends; see [`crate::undo::Wire`]).
    Undo(Box<crate::undo::Wire>),
}

impl Command {
    /// The command's word, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Period(_) => "period",
            Command::Diff => "diff",
            Command::History(_) => "history",
            Command::Pid(_) => "pid",
            Command::Status => "status",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Sample => "sample",
            Command::Stop => "stop",
            Command::Help => "help",
            Command::Mark(_) => "mark",
            Command::Undo(_) => "undo",
        }
    }
}

/// Renders the line form, so that `parse(cmd.to_string())` gives `cmd` back.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Command::Period(period) => write!(f, " {}", period.as_millis()),
            Command::History(k) => write!(f, " {k}"),
            Command::Pid(pid) => write!(f, " {pid}"),
            Command::Mark(name) => write!(f, " {name}"),
            _ => Ok(()),
        }
    }
}

/// Why a control line was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty or blank; callers may skip these silently.
    #[error("empty command")]
    Empty,
    /// The line is longer than [`MAX_LINE`].
    #[error("command line is {len} bytes, longer than the limit of {MAX_LINE}")]
    TooLong {
        /// Length of the line without its newline.
        len: usize,
    },
    /// The line is not valid UTF-8.
    #[error("command line is not valid utf-8")]
    NotUtf8,
    /// The first word is not a command.
    #[error("unknown command {}, try \"help\"", quote(.0))]
    Unknown(String),
    /// A command that needs an argument came without one.
    #[error("{command} needs an argument (usage: {})", usage(.command))]
    MissingArgument {
        /// The command's word.
        command: &'static str,
    },
    /// A command came with more arguments than it takes.
    #[error("unexpected argument {} (usage: {})", quote(.token), usage(.command))]
    ExtraArgument {
        /// The command's word.
        command: &'static str,
        /// The first argument too many.
        token: String,
    },
    /// A numeric argument is not a plain decimal integer in range.
    #[error(
        "bad argument {} to {command}: expected a whole number from {min} to {max}",
        quote(.token)
    )]
    BadNumber {
        /// The command's word.
        command: &'static str,
        /// The argument as given.
        token: String,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// An `undo` request that does not parse.
    #[error("bad undo request: {why}")]
    BadUndo {
        /// Why.
        why: String,
    },
    /// A mark name that is not one (see [`crate::journal::record::valid_mark_name`]).
    #[error("bad mark name {}: {why}", quote(.name))]
    BadMark {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Longest piece of user input quoted in an error message, in characters.
const QUOTE_CHARS: usize = 40;

/// `token` in double quotes, with control and other unprintable characters
/// escaped as Rust does (`\n`, `\u{1b}`), cut so that the quoted text is at
/// most [`QUOTE_CHARS`] characters (marked with `...`).
fn quote(token: &str) -> String {
    let mut out = String::from("\"");
    let mut used = 0;
    for c in token.chars() {
        let start = out.len();
        if c == '\'' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
        used += out[start..].chars().count();
        if used > QUOTE_CHARS {
            out.truncate(start);
            out.push_str("\"...");
            return out;
        }
    }
    out.push('"');
    out
}

/// The synopsis of `command` from [`COMMANDS`].
fn usage(command: &str) -> String {
    match COMMANDS.iter().find(|row| row.name == command) {
        Some(row) if !row.args.is_empty() => format!("{} {}", row.name, row.args),
        _ => command.to_string(),
    }
}

/// Parse one line (may end in `\n` or `\r\n`; surrounding whitespace
/// ignored). Pure: nothing is touched whatever the line holds.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong { len: line.len() });
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let mut words = line.split_ascii_whitespace();
    let word = words.next().ok_or(ParseError::Empty)?;
    if word == "mark" {
        // The name is the rest of the line: it may hold spaces.
        let name = line.trim().strip_prefix("mark").unwrap_or_default().trim();
        if name.is_empty() {
            return Err(ParseError::MissingArgument { command: "mark" });
        }
        if let Some(why) = crate::journal::record::valid_mark_name(name) {
            return Err(ParseError::BadMark { name: name.to_string(), why });
        }
        return Ok(Command::Mark(name.to_string()));
    }
    if word == "undo" {
        let json = line.trim().strip_prefix("undo").unwrap_or_default().trim();
        if json.is_empty() {
            return Err(ParseError::MissingArgument { command: "undo" });
        }
        let wire: crate::undo::Wire =
            serde_json::from_str(json).map_err(|e| ParseError::BadUndo { why: e.to_string() })?;
        wire.request().map_err(|why| ParseError::BadUndo { why })?;
        return Ok(Command::Undo(Box::new(wire)));
    }
    let arg = words.next();
    let command = match word {
        "period" => {
            let ms = number("period", arg, 1, MAX_PERIOD_MS)?;
            Command::Period(Duration::from_millis(ms))
        }
        "history" => {
            let k = number("history", arg, 1, MAX_HISTORY as u64)?;
            Command::History(usize::try_from(k).unwrap_or(usize::MAX))
        }
        "pid" => {
            let pid = number("pid", arg, 1, MAX_PID as u64)?;
            Command::Pid(i32::try_from(pid).unwrap_or(i32::MAX))
        }
        "diff" => Command::Diff,
        "status" => Command::Status,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "sample" => Command::Sample,
        "stop" => Command::Stop,
        "help" => Command::Help,
        _ => return Err(ParseError::Unknown(word.to_string())),
    };
    // The argument of a command that takes one was consumed above.
    let extra = match command {
        Command::Period(_) | Command::History(_) | Command::Pid(_) => words.next(),
        _ => arg,
    };
    match extra {
        Some(token) => Err(ParseError::ExtraArgument { command: command.name(), token: token.to_string() }),
        None => Ok(command),
    }
}

/// A plain decimal argument of `command` in `min..=max`.
fn number(command: &'static str, arg: Option<&str>, min: u64, max: u64) -> Result<u64, ParseError> {
    let token = arg.ok_or(ParseError::MissingArgument { command })?;
    let bad = || ParseError::BadNumber { command, token: token.to_string(), min, max };
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match token.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// One row of the command table: the single source for `help`, the man page
/// and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandHelp {
    /// The command's word.
    pub name: &'static str,
    /// Argument synopsis, empty when it takes none.
    pub args: &'static str,
    /// One-line summary, lower case, no trailing period.
    pub summary: &'static str,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "period",
        args: "<ms>",
        summary: "set the sampling period, in milliseconds (1 to 86400000)",
    },
    CommandHelp { name: "diff", args: "", summary: "show what changed since the last sample" },
    CommandHelp {
        name: "history",
        args: "<k>",
        summary: "show the diffs of the last k samples, newest last",
    },
    CommandHelp { name: "pid", args: "<pid>", summary: "follow another process from now on" },
    CommandHelp { name: "status", args: "", summary: "show the monitor's state as key: value lines" },
    CommandHelp { name: "pause", args: "", summary: "stop sampling" },
    CommandHelp { name: "resume", args: "", summary: "restart sampling" },
    CommandHelp { name: "sample", args: "", summary: "take a sample now" },
    CommandHelp { name: "stop", args: "", summary: "shut the monitor down cleanly" },
    CommandHelp {
        name: "mark",
        args: "<name>",
        summary: "write a mark record, which @name finds wherever a point is taken",
    },
    CommandHelp {
        name: "undo",
        args: "<json>",
        summary: "put the tree back to a point and record it (sent by `monitord undo`)",
    },
    CommandHelp { name: "help", args: "", summary: "list the commands" },
];

/// The reply to `help`: one line per [`COMMANDS`] row, synopsis then
/// summary, the summaries aligned; every line ends in `\n`.
pub fn help_text() -> String {
    let synopses: Vec<String> = COMMANDS.iter().map(|row| usage(row.name)).collect();
    let width = synopses.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (synopsis, row) in synopses.iter().zip(COMMANDS) {
        out.push_str(&format!("{synopsis:<width$}  {}\n", row.summary));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Command {
        Command::Period(Duration::from_millis(n))
    }

    #[test]
    fn good_lines() {
        let cases: &[(&[u8], Command)] = &[
            (b"period 250", ms(250)),
            (b"period 1", ms(1)),
            (b"period 86400000", ms(86_400_000)),
            (b"period 007", ms(7)),
            (b"  period\t250  \r\n", ms(250)),
            (b"diff\n", Command::Diff),
            (b"history 1", Command::History(1)),
            (b"history 100000", Command::History(100_000)),
            (b"pid 1", Command::Pid(1)),
            (b"pid 4194304", Command::Pid(4_194_304)),
            (b"status", Command::Status),
            (b"pause", Command::Pause),
            (b"resume\r\n", Command::Resume),
            (b"sample", Command::Sample),
            (b"stop", Command::Stop),
            (b"stop\n\n", Command::Stop),
            (b" help ", Command::Help),
            (b"mark build", Command::Mark("build".into())),
            (b"mark  before the test \n", Command::Mark("before the test".into())),
            (b"mark caf\xc3\xa9 \xe2\x9c\x93", Command::Mark("caf\u{e9} \u{2713}".into())),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).as_ref(), Ok(want), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn bad_lines() {
        use ParseError::*;
        let number = |command, token: &str, max| BadNumber { command, token: token.to_string(), min: 1, max };
        let period = |token| number("period", token, MAX_PERIOD_MS);
        let cases: Vec<(&[u8], ParseError)> = vec![
            (b"", Empty),
            (b"   \t ", Empty),
            (b"\n", Empty),
            (b"\r\n", Empty),
            (b"period", MissingArgument { command: "period" }),
            (b"period -5", period("-5")),
            (b"period 0", period("0")),
            (b"period 1e99", period("1e99")),
            (b"period +5", period("+5")),
            (b"period 5.0", period("5.0")),
            (b"period 86400001", period("86400001")),
            (b"period 99999999999999999999999", period("99999999999999999999999")),
            (b"period \xef\xbc\x95", period("\u{ff15}")),
            (b"period 5 6", ExtraArgument { command: "period", token: "6".into() }),
            (b"history -1", number("history", "-1", 100_000)),
            (b"history 0", number("history", "0", 100_000)),
            (b"history 100001", number("history", "100001", 100_000)),
            (b"history", MissingArgument { command: "history" }),
            (b"pid abc", number("pid", "abc", 4_194_304)),
            (b"pid 0", number("pid", "0", 4_194_304)),
            (b"pid -1", number("pid", "-1", 4_194_304)),
            (b"pid 4194305", number("pid", "4194305", 4_194_304)),
            (b"diff now", ExtraArgument { command: "diff", token: "now".into() }),
            (b"STOP", Unknown("STOP".into())),
            (b"Period 5", Unknown("Period".into())),
            (b"quit", Unknown("quit".into())),
            (b"\0", Unknown("\0".into())),
            (b"st\xffop", NotUtf8),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Err(want), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn length_limit_counts_the_line_without_its_newline() {
        let mut line = b"status".to_vec();
        line.resize(MAX_LINE, b' ');
        assert_eq!(parse(&line), Ok(Command::Status));
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line), Ok(Command::Status));
        line.insert(0, b' ');
        assert_eq!(parse(&line), Err(ParseError::TooLong { len: MAX_LINE + 1 }));
    }

    #[test]
    fn error_messages_are_one_lower_case_line_quoting_the_token() {
        let msg = |line: &[u8]| parse(line).unwrap_err().to_string();
        assert_eq!(msg(b"quit"), "unknown command \"quit\", try \"help\"");
        assert_eq!(
            msg(b"period 5.0"),
            "bad argument \"5.0\" to period: expected a whole number from 1 to 86400000"
        );
        assert_eq!(msg(b"pid"), "pid needs an argument (usage: pid <pid>)");
        assert_eq!(msg(b"stop now"), "unexpected argument \"now\" (usage: stop)");
        assert_eq!(msg(b"history 1 2"), "unexpected argument \"2\" (usage: history <k>)");
        assert_eq!(msg(b"\x1b[2Jx"), "unknown command \"\\u{1b}[2Jx\", try \"help\"");
        let long = msg("y".repeat(100).as_bytes());
        assert_eq!(long, format!("unknown command \"{}\"..., try \"help\"", "y".repeat(40)));
        assert_eq!(msg(b"don't"), "unknown command \"don't\", try \"help\"");
        // Eight escapes of five characters fill the forty; the ninth is cut.
        let bells = msg("\u{7}".repeat(30).as_bytes());
        assert_eq!(bells, format!("unknown command \"{}\"..., try \"help\"", "\\u{7}".repeat(8)));
        for line in [&b""[..], b"\xff", &[b'x'; MAX_LINE + 1], b"pid 0", b"x\x07y\x0bz"] {
            let m = msg(line);
            assert!(!m.contains('\n') && !m.ends_with('.'), "{m:?}");
            assert!(m.chars().all(|c| !c.is_control()), "{m:?}");
            assert!(!m.starts_with(|c: char| c.is_uppercase()), "{m:?}");
        }
    }

    #[test]
    fn undo_takes_one_json_request_and_refuses_anything_else() {
        let wire = |from: &str| crate::undo::Wire {
            from: from.to_string(),
            to: None,
            paths: Vec::new(),
            by: None,
            force: false,
        };
        assert_eq!(parse(br#"undo {"from": "@build"}"#), Ok(Command::Undo(Box::new(wire("@build")))));
        let full = br#"undo {"from":"1","to":"9","paths":[[97,32,98]],"by":"foreign","force":true}"#;
        let Ok(Command::Undo(got)) = parse(full) else { panic!("not an undo") };
        assert_eq!((got.to.as_deref(), &got.paths[..], got.force), (Some("9"), &[b"a b".to_vec()][..], true));
        for bad in [
            &b"undo"[..],
            b"undo 1",
            b"undo {}",
            br#"undo {"from": "soonish"}"#,
            br#"undo {"from": "1", "by": "-2"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_table_row_parses_and_help_lists_it_aligned() {
        let help = help_text();
        let lines: Vec<&str> = help.lines().collect();
        assert_eq!(lines.len(), COMMANDS.len());
        let column = lines[0].find(COMMANDS[0].summary).unwrap();
        for (row, line) in COMMANDS.iter().zip(&lines) {
            let example = match (row.name, row.args.is_empty()) {
                ("undo", _) => r#"undo {"from": "1"}"#.to_string(),
                (name, true) => name.to_string(),
                (name, false) => format!("{name} 1"),
            };
            let cmd = parse(example.as_bytes()).unwrap();
            assert_eq!(cmd.name(), row.name);
            assert!(line.starts_with(&usage(row.name)), "{line:?}");
            assert_eq!(line.find(row.summary), Some(column), "{line:?}");
            if !row.args.is_empty() {
                assert_eq!(
                    parse(row.name.as_bytes()),
                    Err(ParseError::MissingArgument { command: row.name })
                );
            }
        }
        assert!(help.ends_with('\n'));
    }

    fn any_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (1..=MAX_PERIOD_MS).prop_map(ms),
            Just(Command::Diff),
            (1..=MAX_HISTORY).prop_map(Command::History),
            (1..=MAX_PID).prop_map(Command::Pid),
            Just(Command::Status),
            Just(Command::Pause),
            Just(Command::Resume),
            Just(Command::Sample),
            Just(Command::Stop),
            Just(Command::Help),
            "[a-z@.][a-z0-9 _@.-]{0,40}[a-z0-9]".prop_map(Command::Mark),
        ]
    }

    #[test]
    fn bad_mark_names_are_refused() {
        let long = format!("mark {}", "x".repeat(65));
        for (line, why) in [
            (&b"mark"[..], "needs an argument"),
            (b"mark   ", "needs an argument"),
            (b"mark a\x01b", "printable"),
            (b"mark a\x1b[31mred", "printable"),
            (long.as_bytes(), "at most 64 bytes"),
        ] {
            let message = parse(line).unwrap_err().to_string();
            assert!(message.contains(why), "{:?}: {message}", String::from_utf8_lossy(line));
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&line);
        }

        #[test]
        fn near_miss_lines_never_panic_and_errors_are_one_line(
            words in prop::collection::vec(
                prop_oneof![
                    Just("period".to_string()), Just("pid".to_string()),
                    Just("history".to_string()), Just("stop".to_string()),
                    "[0-9+\\-.e ]{0,25}", "\\PC{0,50}",
                ],
                0..4,
            ),
        ) {
            if let Err(e) = parse(words.join(" ").as_bytes()) {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'));
                prop_assert!(msg.chars().count() < 150, "{}", msg);
            }
        }

        #[test]
        fn display_parses_back(cmd in any_command(), pad in "[ \t]{0,3}", crlf in any::<bool>()) {
            let line = cmd.to_string();
            prop_assert_eq!(parse(line.as_bytes()), Ok(cmd.clone()));
            let end = if crlf { "\r\n" } else { "\n" };
            let padded = format!("{pad}{line}{pad}{end}");
            prop_assert_eq!(parse(padded.as_bytes()), Ok(cmd));
        }

        #[test]
        fn lines_longer_than_the_limit_are_rejected(
            cmd in any_command(),
            extra in 1..100usize,
            body in prop::collection::vec(any::<u8>(), MAX_LINE + 2..MAX_LINE + 100),
        ) {
            let mut padded = cmd.to_string().into_bytes();
            padded.resize(MAX_LINE + extra, b' ');
            padded.push(b'\n');
            let is_too_long = |r| matches!(r, Err(ParseError::TooLong { .. }));
            prop_assert!(is_too_long(parse(&padded)));
            let mut body = body;
            body.push(b'\n');
            prop_assert!(is_too_long(parse(&body)));
        }
    }
}
