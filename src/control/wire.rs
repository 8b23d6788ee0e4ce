//! The control channel's wire protocol, shared by the FIFO listener and
//! `monitord ctl`. Pure: bytes in, bytes out.
//!
//! A **request** is one line written to `<store>/ctl`:
//!
//! ```text
//! status\n                          a plain command: the reply goes to the log
//! @/tmp/monitord-ctl-Xq3/reply status\n
//!                                   a command whose reply goes to that FIFO
//! ```
//!
//! The reply FIFO is created by the client (mode 0600, in a private 0700
//! directory; when root talks to another user's monitor, the FIFO belongs
//! to that user and the directory is 0711, since the monitor opens it with
//! its own rights) and named after `@`, up to the first space; the path
//! may not contain whitespace. A request line must fit in `PIPE_BUF` (4096 bytes) so
//! that concurrent writers never interleave (pipe(7)).
//!
//! A **reply** is framed so the client knows where it ends without relying
//! on end-of-file: a header line `ok <len>\n` or `error <len>\n`, then exactly
//! `len` bytes of body (UTF-8 text, lines ending in `\n`).

/// Largest request line, newline included: writes up to `PIPE_BUF` bytes
/// to a FIFO are atomic.
pub const MAX_REQUEST: usize = 4096;

/// Largest reply body accepted by the client.
pub const MAX_REPLY: usize = 64 << 20;

/// The answer to one control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// False for an error reply.
    pub ok: bool,
    /// The reply text (lines ending in `\n`).
    pub text: String,
}

impl Reply {
    /// A success reply.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply { ok: true, text: text.into() }
    }

    /// An error reply; the text is prefixed with `error: `.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply { ok: false, text: format!("error: {}\n", text.into()) }
    }
}

/// One request line, split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Where the reply goes (`None`: to the log).
    pub reply_to: Option<&'a [u8]>,
    /// The command line itself.
    pub command: &'a [u8],
}

/// Split a request line (without its newline).
pub fn parse_request(line: &[u8]) -> Request<'_> {
    match line.strip_prefix(b"@") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(rest.len());
            let command = rest.get(end + 1..).unwrap_or(&[]);
            Request { reply_to: Some(&rest[..end]), command }
        }
        None => Request { reply_to: None, command: line },
    }
}

/// Build a request line for `command` with its reply going to `reply_to`.
/// `None` when the path holds whitespace or a newline, or the line would
/// exceed [`MAX_REQUEST`].
pub fn encode_request(reply_to: &[u8], command: &[u8]) -> Option<Vec<u8>> {
    if reply_to.is_empty() || reply_to.iter().any(|b| b.is_ascii_whitespace()) || command.contains(&b'\n') {
        return None;
    }
    let mut line = Vec::with_capacity(reply_to.len() + command.len() + 3);
    line.push(b'@');
    line.extend_from_slice(reply_to);
    line.push(b' ');
    line.extend_from_slice(command);
    line.push(b'\n');
    (line.len() <= MAX_REQUEST).then_some(line)
}

/// Frame a reply.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let word = if reply.ok { "ok" } else { "error" };
    let mut out = format!("{word} {}\n", reply.text.len()).into_bytes();
    out.extend_from_slice(reply.text.as_bytes());
    out
}

/// A reply frame that is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from the daemon")]
pub struct BadReply;

/// Decode a reply from the bytes received so far: `Ok(None)` when more are
/// needed.
///
/// # Errors
/// [`BadReply`] when the header is not `ok <len>` / `error <len>`, the
/// length is too large or the body is not UTF-8.
pub fn decode_reply(buf: &[u8]) -> Result<Option<Reply>, BadReply> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > 32 { Err(BadReply) } else { Ok(None) };
    };
    let header = std::str::from_utf8(&buf[..newline]).map_err(|_| BadReply)?;
    let (word, len) = header.split_once(' ').ok_or(BadReply)?;
    let ok = match word {
        "ok" => true,
        "error" => false,
        _ => return Err(BadReply),
    };
    let len: usize = len.parse().map_err(|_| BadReply)?;
    if len > MAX_REPLY {
        return Err(BadReply);
    }
    let body = &buf[newline + 1..];
    if body.len() < len {
        return Ok(None);
    }
    if body.len() > len {
        return Err(BadReply);
    }
    let text = String::from_utf8(body.to_vec()).map_err(|_| BadReply)?;
    Ok(Some(Reply { ok, text }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_addressed_requests_split() {
        assert_eq!(parse_request(b"status"), Request { reply_to: None, command: b"status" });
        assert_eq!(
            parse_request(b"@/tmp/x/reply period 50"),
            Request { reply_to: Some(b"/tmp/x/reply"), command: b"period 50" }
        );
        assert_eq!(parse_request(b"@/tmp/x"), Request { reply_to: Some(b"/tmp/x"), command: b"" });
    }

    #[test]
    fn requests_that_cannot_be_atomic_are_refused() {
        assert!(encode_request(b"/tmp/a b", b"status").is_none());
        assert!(encode_request(b"/tmp/r", &vec![b'x'; MAX_REQUEST]).is_none());
        assert!(encode_request(b"/tmp/r", b"a\nb").is_none());
        assert_eq!(encode_request(b"/tmp/r", b"status").unwrap(), b"@/tmp/r status\n");
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode_reply(b"ok 3\nab"), Ok(None));
        assert_eq!(decode_reply(b"maybe 1\nx"), Err(BadReply));
        assert_eq!(decode_reply(b"ok 1\nxy"), Err(BadReply));
        assert_eq!(decode_reply(b"ok 99999999999\n"), Err(BadReply));
        assert_eq!(decode_reply(&[b'x'; 40]), Err(BadReply));
    }

    proptest! {
        #[test]
        fn replies_round_trip(ok in any::<bool>(), text in ".{0,200}") {
            let reply = Reply { ok, text };
            let frame = encode_reply(&reply);
            prop_assert_eq!(decode_reply(&frame), Ok(Some(reply)));
            for cut in 0..frame.len() {
                prop_assert_eq!(decode_reply(&frame[..cut]), Ok(None));
            }
        }

        #[test]
        fn request_round_trips(path in "/[a-z0-9/]{1,60}", command in "[ -~]{0,100}") {
            let line = encode_request(path.as_bytes(), command.as_bytes()).unwrap();
            let parsed = parse_request(line.strip_suffix(b"\n").unwrap());
            prop_assert_eq!(parsed.reply_to, Some(path.as_bytes()));
            prop_assert_eq!(parsed.command, command.as_bytes());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&bytes);
            let _ = decode_reply(&bytes);
        }
    }
}
