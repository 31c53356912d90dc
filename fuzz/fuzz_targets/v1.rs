//! Fuzzes the `wshub.v1` JSON subprotocol: `parse_client_frame` and the room
//! and nickname rules. Checked: no panic; a bad frame gets a message; a good
//! one re-serialises and re-parses to the same value; the name rules agree
//! with their documented definitions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub::protocol::v1::{
    is_valid_nick, is_valid_room, parse_client_frame, ClientFrame, MAX_NICK_CHARS, MAX_ROOM_CHARS,
};

fn check_names(text: &str) {
    let room = is_valid_room(text);
    let room_spec = (1..=MAX_ROOM_CHARS).contains(&text.chars().count())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    assert_eq!(room, room_spec, "is_valid_room({text:?})");
    let nick = is_valid_nick(text);
    let chars: Vec<char> = text.chars().collect();
    let nick_spec = (1..=MAX_NICK_CHARS).contains(&chars.len())
        && !chars.iter().any(|&c| c.is_control() || INVISIBLE.iter().any(|r| r.contains(&c)))
        && joiners_stand_between_non_ascii(&chars)
        && chars.iter().any(|c| !c.is_whitespace());
    assert_eq!(nick, nick_spec, "is_valid_nick({text:?})");
}

/// The invisible formatting characters docs/protocol.md refuses in a
/// nickname (zero-width spaces, direction marks, overrides, isolates).
const INVISIBLE: [std::ops::RangeInclusive<char>; 10] = [
    '\u{00AD}'..='\u{00AD}',
    '\u{061C}'..='\u{061C}',
    '\u{180E}'..='\u{180E}',
    '\u{200B}'..='\u{200B}',
    '\u{200E}'..='\u{200F}',
    '\u{202A}'..='\u{202E}',
    '\u{2060}'..='\u{2064}',
    '\u{2066}'..='\u{206F}',
    '\u{FEFF}'..='\u{FEFF}',
    '\u{FFF9}'..='\u{FFFB}',
];

/// A joiner (U+200C, U+200D) only with a non-ASCII character that is not
/// a joiner on each side.
fn joiners_stand_between_non_ascii(chars: &[char]) -> bool {
    let joiner = |c: char| c == '\u{200C}' || c == '\u{200D}';
    let joinable = |c: Option<&char>| c.is_some_and(|&c| !c.is_ascii() && !joiner(c));
    (0..chars.len()).filter(|&i| joiner(chars[i])).all(|i| {
        let before = i.checked_sub(1).and_then(|p| chars.get(p));
        joinable(before) && joinable(chars.get(i + 1))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_names(text);
    }
    match parse_client_frame(data) {
        Ok(frame) => {
            let json = serde_json::to_vec(&frame).expect("a client frame serialises");
            let again = parse_client_frame(&json)
                .unwrap_or_else(|e| panic!("re-parse of {} failed: {e:?}", String::from_utf8_lossy(&json)));
            assert_eq!(again, frame, "round trip through {}", String::from_utf8_lossy(&json));
            let direct: ClientFrame = serde_json::from_slice(&json).expect("serde agrees");
            assert_eq!(direct, frame);
            let names: Vec<&str> = match &frame {
                ClientFrame::Join { room, .. }
                | ClientFrame::Leave { room }
                | ClientFrame::History { room, .. }
                | ClientFrame::Members { room } => vec![room],
                ClientFrame::Send { room, text, client_ref } => {
                    let mut names = vec![room.as_str(), text.as_str()];
                    names.extend(client_ref.as_deref());
                    names
                }
                ClientFrame::Nick { nick } => vec![nick],
            };
            for name in names {
                check_names(name);
            }
        }
        Err((_code, message)) => assert!(!message.is_empty(), "an error frame needs a message"),
    }
});
