//! A Server-Sent Events parser (the WHATWG "event stream" format), fed the body's bytes
//! as they come: `id:`, `event:` and `data:` fields, comments (`:`) skipped, a blank line
//! ending an event; lines end with LF, CRLF or CR, which may fall across two chunks.

/// One event of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// Its `id:` field, if it had one.
    pub id: Option<String>,
    /// Its `event:` field, if it had one.
    pub event: Option<String>,
    /// Its `data:` fields, joined by line feeds.
    pub data: String,
}

/// The parser's state between two chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// The line read so far.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends no other line.
    after_cr: bool,
    /// The event read so far.
    event: SseEvent,
    /// Whether it has a `data:` field (an event without one is not dispatched).
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `chunk`: the events it completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                out.push(event);
            }
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return,
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.event.id = Some(value.into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, kind: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_string),
            event: kind.map(str::to_string),
            data: data.to_string(),
        }
    }

    const STREAM: &str = ": open\n\nid: 0\ndata: {\"id\":0}\n\nid: 1\nevent: note\ndata: {\"id\":1}\n\n\
                          : keepalive\n\nid: 2\ndata: a\ndata: b\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            event(Some("0"), None, "{\"id\":0}"),
            event(Some("1"), Some("note"), "{\"id\":1}"),
            event(Some("2"), None, "a\nb"),
        ]
    }

    #[test]
    fn reads_fields_and_skips_comments() {
        assert_eq!(SseParser::new().push(STREAM.as_bytes()), expected());
    }

    #[test]
    fn any_split_into_chunks_reads_the_same() {
        let bytes = STREAM.as_bytes();
        for at in 0..=bytes.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&bytes[..at]);
            got.extend(p.push(&bytes[at..]));
            assert_eq!(got, expected(), "split at {at}");
        }
        let mut p = SseParser::new();
        let got: Vec<_> = bytes.iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(got, expected(), "byte by byte");
    }

    #[test]
    fn crlf_and_cr_end_lines_even_across_chunks() {
        let mut p = SseParser::new();
        let mut got = p.push(b"id: 7\r\ndata: x\r");
        got.extend(p.push(b"\n\r"));
        got.extend(p.push(b"\nid: 8\rdata: y\r\r"));
        assert_eq!(
            got,
            vec![event(Some("7"), None, "x"), event(Some("8"), None, "y")]
        );
    }

    #[test]
    fn field_forms_of_the_spec() {
        // No space after the colon; a field without a colon is empty; one leading space
        // only is dropped; unknown fields are ignored; an event without data is not one.
        let got = SseParser::new().push(b"data:a\ndata\ndata:  b\nretry: 5\nfoo: x\n\nid: 9\n\n");
        assert_eq!(got, vec![event(None, None, "a\n\n b")]);
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut p = SseParser::new();
        assert!(p.push(b"id: 1\ndata: {\"a\":").is_empty());
        assert_eq!(p.push(b"1}\n\n"), vec![event(Some("1"), None, "{\"a\":1}")]);
    }

    #[test]
    fn utf8_split_across_chunks_is_kept() {
        let text = "data: héllo\n\n".as_bytes();
        let mut p = SseParser::new();
        let mut got = p.push(&text[..8]);
        got.extend(p.push(&text[8..]));
        assert_eq!(got, vec![event(None, None, "héllo")]);
    }
}
