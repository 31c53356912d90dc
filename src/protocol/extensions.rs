//! `Sec-WebSocket-Extensions` negotiation (RFC 6455 9.1, RFC 7692 7.1).
//!
//! A client lists offers in order of preference; the server accepts at most
//! one and answers with the parameters agreed. wshub knows one extension,
//! `permessage-deflate`, and accepts the first offer of it whose parameters
//! are all known, unrepeated and well-formed: a malformed offer is declined
//! (skipped), not an error, so that a client's fallback offer still works
//! and a client with no acceptable offer still connects, uncompressed.

use super::deflate::DeflateParams;

/// The first acceptable `permessage-deflate` offer among the header's
/// values, as the parameters to run with (answer with
/// [`DeflateParams::response_header`]); `None` to run uncompressed.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<DeflateParams> {
    header_values
        .into_iter()
        .flat_map(|value| split_outside_quotes(value, ','))
        .find_map(accept_offer)
}

/// Parameters of one offer if wshub can honour it. Every offer can be
/// honoured in the end (see the `deflate` module on window sizes), as long
/// as it is well-formed: the no-context-takeover parameters are what wshub
/// does anyway, a client window is never too small to inflate, and a
/// server window of 8 to 15 bits is kept by sending longer messages plain.
fn accept_offer(offer: &str) -> Option<DeflateParams> {
    let mut parts = split_outside_quotes(offer, ';').into_iter();
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_bits = None;
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
            None => (part, None),
        };
        let index = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                server_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                // Without a value: "I can limit my window if you ask";
                // with one: "I will". Either way, any window inflates.
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    DeflateParams::new(server_bits)
}

/// A window size parameter: 8 to 15, plain digits (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// A token or a quoted string's content (escapes are not needed by any
/// value wshub accepts, so a backslash declines the offer).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => Some(value),
    }
}

/// Splits at `separator`s that are not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(offer: &str) -> Option<String> {
        negotiate([offer]).map(|params| params.response_header())
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn browsers_offer_is_accepted_without_context_takeover() {
        assert_eq!(
            header("permessage-deflate; client_max_window_bits").as_deref(),
            Some(BOTH)
        );
        assert_eq!(header("permessage-deflate").as_deref(), Some(BOTH));
        assert_eq!(
            header("PerMessage-Deflate ; client_max_window_bits=10").as_deref(),
            Some(BOTH)
        );
    }

    #[test]
    fn a_server_window_limit_is_repeated() {
        assert_eq!(
            header("permessage-deflate; server_max_window_bits=9; server_no_context_takeover"),
            Some(format!("{BOTH}; server_max_window_bits=9"))
        );
        assert_eq!(
            header("permessage-deflate; server_max_window_bits=\"12\""),
            Some(format!("{BOTH}; server_max_window_bits=12"))
        );
        assert_eq!(
            header("permessage-deflate; server_max_window_bits=15").as_deref(),
            Some(BOTH)
        );
    }

    #[test]
    fn malformed_offers_are_declined() {
        for offer in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=0x9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(header(offer), None, "{offer}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        let offers = "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=10, permessage-deflate";
        assert_eq!(header(offers), Some(format!("{BOTH}; server_max_window_bits=10")));
        let params = negotiate(["foo; bar=\"a,b\"", "permessage-deflate"]);
        assert_eq!(params, DeflateParams::new(None));
        assert_eq!(negotiate([] as [&str; 0]), None);
    }
}
