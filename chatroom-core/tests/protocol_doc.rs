//! Checks docs/protocol.md against the code, so the contract cannot drift
//! from what the crate does.
//!
//! The document marks its examples with fenced blocks whose info string
//! names what they hold:
//!
//! - ` ```json client ` / ` ```json server `: one frame per line, in the exact
//!   bytes `encode` produces;
//! - ` ```text session `: a transcript, `> ` for client lines and `< ` for
//!   server lines;
//! - ` ```text typed `: `> ` plus a line typed in the text dialect (current
//!   room `lobby`), then the equivalent native request or `! ` plus the error;
//! - ` ```text render `: a server frame, then the line(s) a text client sees
//!   for it (none for frames that are not shown).
//!
//! Run with `cargo test -p chatroom-core --test protocol_doc`.

use std::collections::BTreeSet;

use chatroom_core::protocol::text::{self, TextInput};
use chatroom_core::protocol::{
    self, ClientFrame, ClientMessage, ErrorCode, RoomName, ServerFrame, decode, encode,
};
use serde::de::DeserializeOwned;

/// The document, embedded at compile time so that editing it rebuilds this
/// test.
const DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"));

/// One fenced code block of the document.
struct Block<'a> {
    /// The info string after the opening fence, e.g. `json client`.
    info: &'a str,
    /// The block's lines with their 1-based line numbers in the document.
    lines: Vec<(usize, &'a str)>,
}

fn blocks() -> Vec<Block<'static>> {
    let mut out = Vec::new();
    let mut current: Option<Block<'static>> = None;
    for (i, line) in DOC.lines().enumerate() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                current = Some(Block {
                    info: info.trim(),
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.extend(current.take()),
            (Some(block), _) => block.lines.push((i + 1, line)),
            (None, None) => {}
        }
    }
    assert!(
        current.is_none(),
        "docs/protocol.md has an unclosed code block"
    );
    out
}

fn blocks_tagged(info: &str) -> Vec<Block<'static>> {
    let found: Vec<_> = blocks().into_iter().filter(|b| b.info == info).collect();
    assert!(!found.is_empty(), "docs/protocol.md has no ```{info} block");
    found
}

/// Decodes `line` as a `T` and checks that encoding it again gives back the
/// same bytes. Returns the frame, or a description of the failure.
fn round_trip<T>(line_no: usize, line: &str) -> Result<T, String>
where
    T: DeserializeOwned + serde::Serialize,
{
    let frame: T = decode(line.as_bytes())
        .map_err(|e| format!("line {line_no}: {line}\n  does not decode: {e}"))?;
    let again = encode(&frame);
    let expected = format!("{line}\n");
    if again[..] != *expected.as_bytes() {
        return Err(format!(
            "line {line_no}: {line}\n  re-encodes as: {}",
            String::from_utf8_lossy(&again).trim_end()
        ));
    }
    Ok(frame)
}

fn frame_type(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("already decoded");
    value["type"]
        .as_str()
        .expect("frames have a type")
        .to_owned()
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "docs/protocol.md disagrees with the code:\n{}",
        failures.join("\n")
    );
}

/// Every JSON example in a client or server block, and every line of the
/// session transcript, decodes and re-encodes to exactly the same line.
/// Returns the frame types seen, for the coverage test.
fn check_json_examples() -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    let mut client_types = BTreeSet::new();
    let mut server_types = BTreeSet::new();
    let mut failures = Vec::new();
    for block in blocks_tagged("json client") {
        for (n, line) in block.lines.iter().filter(|(_, l)| !l.trim().is_empty()) {
            match round_trip::<ClientFrame>(*n, line) {
                Ok(_) => {
                    client_types.insert(frame_type(line));
                }
                Err(e) => failures.push(e),
            }
        }
    }
    for block in blocks_tagged("json server") {
        for (n, line) in block.lines.iter().filter(|(_, l)| !l.trim().is_empty()) {
            match round_trip::<ServerFrame>(*n, line) {
                Ok(_) => {
                    server_types.insert(frame_type(line));
                }
                Err(e) => failures.push(e),
            }
        }
    }
    for block in blocks_tagged("text session") {
        for (n, line) in block.lines.iter().filter(|(_, l)| !l.trim().is_empty()) {
            if let Some(json) = line.strip_prefix("> ") {
                match round_trip::<ClientFrame>(*n, json) {
                    Ok(_) => drop(client_types.insert(frame_type(json))),
                    Err(e) => failures.push(e),
                }
            } else if let Some(json) = line.strip_prefix("< ") {
                match round_trip::<ServerFrame>(*n, json) {
                    Ok(_) => drop(server_types.insert(frame_type(json))),
                    Err(e) => failures.push(e),
                }
            } else {
                failures.push(format!("line {n}: session lines start with '> ' or '< '"));
            }
        }
    }
    (client_types, server_types, failures)
}

#[test]
fn json_examples_decode_and_reencode_exactly() {
    let (_, _, failures) = check_json_examples();
    report(failures);
}

/// The frame types a frame enum accepts, read from serde's unknown-variant
/// error ("unknown variant `?`, expected one of `a`, `b`"), so that a new
/// variant without an example in the document fails this test.
fn frame_types<T: DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let err = decode::<T>(br#"{"type":"?"}"#).unwrap_err().to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected serde error: {err}"));
    let list = list.split(" at line ").next().unwrap_or(list);
    list.split(", ")
        .map(|v| v.trim_matches('`').to_owned())
        .collect()
}

#[test]
fn every_frame_type_has_an_example() {
    let client_all = frame_types::<ClientFrame>();
    let server_all = frame_types::<ServerFrame>();
    assert!(
        client_all.contains("hello") && client_all.len() >= 12,
        "{client_all:?}"
    );
    assert!(
        server_all.contains("welcome") && server_all.len() >= 14,
        "{server_all:?}"
    );

    let (client_seen, server_seen, _) = check_json_examples();
    let missing_client: Vec<_> = client_all.difference(&client_seen).collect();
    let missing_server: Vec<_> = server_all.difference(&server_seen).collect();
    assert!(
        missing_client.is_empty() && missing_server.is_empty(),
        "docs/protocol.md has no example of client frames {missing_client:?} \
         or server frames {missing_server:?}"
    );
}

/// The text of the section that starts with `heading`, up to the next
/// heading of level 2 or 3.
fn section(heading: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/protocol.md has no {heading:?} section"));
    let body = &DOC[start + heading.len() + 2..];
    let end = [body.find("\n## "), body.find("\n### ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    &body[..end]
}

/// Each frame in the summary table, by its type name.
#[test]
fn summary_table_names_every_frame_type() {
    let summary = section("### Summary");
    let mut failures = Vec::new();
    for ty in frame_types::<ClientFrame>()
        .into_iter()
        .chain(frame_types::<ServerFrame>())
    {
        let row = format!("| `{ty}` ");
        if !summary.lines().any(|l| l.starts_with(&row)) {
            failures.push(format!("the summary table has no row for `{ty}`"));
        }
    }
    report(failures);
}

/// The equivalent native request of a typed line, as the engine sees it.
fn as_request(input: TextInput, room: &RoomName) -> Option<ClientMessage> {
    match input {
        TextInput::Request(message) => Some(message),
        // The text dialect's /join switches rooms; its native half is a join.
        TextInput::Switch(room) => Some(ClientMessage::Join {
            room,
            key: None,
            history: None,
            after: None,
        }),
        TextInput::SwitchKeyed(room, key) => Some(ClientMessage::Join {
            room,
            key: Some(key),
            history: None,
            after: None,
        }),
        TextInput::History(limit) => Some(ClientMessage::History {
            room: room.clone(),
            before: None,
            after: None,
            limit,
        }),
        _ => None,
    }
}

#[test]
fn typed_examples_match_the_text_parser() {
    let lobby = RoomName::new("lobby").unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for block in blocks_tagged("text typed") {
        let mut lines = block.lines.iter().filter(|(_, l)| !l.trim().is_empty());
        while let Some((n, typed)) = lines.next() {
            let Some(typed) = typed.strip_prefix("> ") else {
                failures.push(format!("line {n}: expected '> ' and a typed line"));
                continue;
            };
            let Some((m, expected)) = lines.next() else {
                failures.push(format!("line {n}: '{typed}' has no expected result"));
                break;
            };
            checked += 1;
            let got = match text::parse_line(typed, Some(&lobby)) {
                Ok(input) => match as_request(input.clone(), &lobby) {
                    Some(message) => {
                        let line = encode(&ClientFrame::new(message));
                        String::from_utf8(line.to_vec())
                            .unwrap()
                            .trim_end()
                            .to_owned()
                    }
                    None => format!("{input:?}"),
                },
                Err(e) => format!("! {e}"),
            };
            if got != *expected {
                failures.push(format!(
                    "line {m}: typing '{typed}' gives\n  {got}\n  not\n  {expected}"
                ));
            }
        }
    }
    assert!(checked > 0, "no typed examples found");
    report(failures);
}

#[test]
fn render_examples_match_the_text_renderer() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for block in blocks_tagged("text render") {
        // Group each frame with the rendered lines that follow it.
        let mut groups: Vec<(usize, &str, Vec<&str>)> = Vec::new();
        for (n, line) in block.lines.iter().filter(|(_, l)| !l.trim().is_empty()) {
            if line.starts_with('{') {
                groups.push((*n, line, Vec::new()));
            } else if let Some(group) = groups.last_mut() {
                group.2.push(line);
            } else {
                failures.push(format!("line {n}: a rendered line before any frame"));
            }
        }
        for (n, json, rendered) in groups {
            checked += 1;
            let frame = match round_trip::<ServerFrame>(n, json) {
                Ok(frame) => frame,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let expected = (!rendered.is_empty()).then(|| rendered.join("\r\n"));
            let got = text::render(&frame.message);
            if got != expected {
                failures.push(format!(
                    "line {n}: {json}\n  renders as {got:?}\n  not {expected:?}"
                ));
            }
        }
    }
    assert!(checked > 0, "no render examples found");
    report(failures);
}

#[test]
fn limits_table_matches_the_constants() {
    let constants = [
        ("PROTOCOL_VERSION", protocol::PROTOCOL_VERSION as usize),
        ("DEFAULT_MAX_LINE_LEN", protocol::DEFAULT_MAX_LINE_LEN),
        ("MAX_TEXT_LEN", protocol::MAX_TEXT_LEN),
        ("MAX_REF_LEN", protocol::MAX_REF_LEN),
        ("MAX_NICK_LEN", protocol::MAX_NICK_LEN),
        ("MAX_ROOM_LEN", protocol::MAX_ROOM_LEN),
    ];
    let mut failures = Vec::new();
    for (name, value) in constants {
        let prefix = format!("| `{name}`");
        let Some(row) = DOC.lines().find(|l| l.starts_with(&prefix)) else {
            failures.push(format!("the limits table has no row for {name}"));
            continue;
        };
        let cell = row.split('|').nth(2).unwrap_or("").trim();
        if cell.parse::<usize>() != Ok(value) {
            failures.push(format!("{name} is {value}, the limits table says {cell:?}"));
        }
    }
    report(failures);
}

/// The codes in the first column of the error-code table.
fn documented_error_codes() -> Vec<String> {
    section("### Error codes")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn error_table_lists_every_code_and_only_real_ones() {
    let documented = documented_error_codes();
    let mut failures = Vec::new();
    for code in ErrorCode::ALL {
        let n = documented.iter().filter(|d| *d == code.as_str()).count();
        if n != 1 {
            failures.push(format!("`{code}` appears {n} times in the error table"));
        }
    }
    for code in &documented {
        if serde_json::from_value::<ErrorCode>(serde_json::Value::from(code.as_str())).is_err() {
            failures.push(format!(
                "the error table lists `{code}`, which is no error code"
            ));
        }
    }
    report(failures);
}

fn client(line: &str) -> Result<ClientFrame, ErrorCode> {
    decode::<ClientFrame>(line.as_bytes()).map_err(|e| e.code())
}

/// Backs the compatibility rules in the document: what the decoder does
/// with unknown fields, unknown types, `null`, duplicates and `#` in names.
#[test]
fn decoding_rules_stated_in_the_doc_hold() {
    let plain = client(r#"{"type":"say","room":"lobby","text":"hi"}"#).unwrap();
    assert_eq!(
        client(r#"{"type":"say","room":"lobby","text":"hi","color":"red","x":{"y":[1]}}"#),
        Ok(plain),
        "unknown fields are ignored"
    );
    assert_eq!(
        client(r#"{"type":"ping","since":"v1.1"}"#),
        client(r#"{"type":"ping"}"#),
        "unknown fields are ignored on frames without fields"
    );
    assert_eq!(
        client(r#"{"type":"dance"}"#),
        Err(ErrorCode::BadFrame),
        "an unknown type is bad_frame"
    );
    assert_eq!(
        client(r#"{"type":"Join","room":"lobby"}"#),
        Err(ErrorCode::BadFrame),
        "type names are compared exactly"
    );
    assert_eq!(
        client(r#"{"type":"say","room":"lobby","text":"hi","action":null}"#),
        Err(ErrorCode::BadFrame),
        "null is refused for action"
    );
    assert_eq!(
        client(r#"{"ref":null,"type":"quit","reason":null}"#),
        client(r#"{"type":"quit"}"#),
        "null is absent for optional strings"
    );
    assert_eq!(
        client(r#"{"type":"join","room":"lobby","room":"rust"}"#),
        Err(ErrorCode::BadFrame),
        "a duplicate field is bad_frame"
    );
    assert_eq!(
        client(r#"{"type":"join","room":5}"#),
        Err(ErrorCode::BadFrame),
        "a mistyped known field is bad_frame"
    );
    assert_eq!(
        client(r##"{"type":"join","room":"#lobby"}"##),
        Err(ErrorCode::InvalidName),
        "'#' is refused in JSON room names"
    );
    assert_eq!(
        client(r#"{"type":"hello","version":1,"resume":{"no good":1}}"#),
        Err(ErrorCode::InvalidName),
        "resume keys are room names"
    );
    assert_eq!(
        client("{\"type\":\"ping\"}\r\n"),
        client("{\"type\":\"ping\"}"),
        "\\r\\n is accepted"
    );
}
