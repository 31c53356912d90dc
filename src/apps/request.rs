//! The HTTP API's signed requests: what `POST /apps/{id}/events` and the
//! other HTTP API calls must carry, and the answer when they do not.
//!
//! From Pusher's HTTP API reference ("Authentication",
//! <https://pusher.com/docs/channels/library_auth_reference/rest-api#authentication>):
//! every request has `auth_key`, `auth_timestamp` (within 600 s of the
//! server's clock), `auth_version` (`1.0`) and `auth_signature`, plus
//! `body_md5` (hex MD5 of the body) when the body is not empty. The
//! signature is the hex HMAC-SHA256, under the app's secret, of
//!
//! ```text
//! METHOD\nPATH\nQUERY
//! ```
//!
//! where QUERY is every query parameter but `auth_signature`, keys
//! lowercased, sorted by key, joined as `key=value` with `&`, and not URL
//! escaped. The SDKs differ in how they put values in the URL: the `pusher`
//! npm and PyPI packages send them as they signed them, raw, while the Go
//! SDK URL-encodes them after signing. The signed string is the decoded
//! one, so values are percent-decoded first; a signature over the raw text
//! as sent (a raw value holding a literal `%` or `+`) is accepted too, as
//! both come from the secret's holder.

use md5::{Digest, Md5};
use thiserror::Error;

use super::Credentials;

/// How far `auth_timestamp` may be from the server's clock, either way.
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// The only `auth_version` there is.
pub const AUTH_VERSION: &str = "1.0";

/// One HTTP API request, as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// `GET`, `POST` (any case: it is signed uppercase).
    pub method: &'a str,
    /// The path as sent, without the query (`/apps/3/events`).
    pub path: &'a str,
    /// The query as sent, without the `?`.
    pub query: &'a str,
    /// The body's bytes (empty for a GET).
    pub body: &'a [u8],
}

/// Why a request was refused. [`ApiAuthError::status`] is the HTTP status
/// to answer with (400 or 401, as Pusher's servers do), and
/// [`ApiAuthError::body`] the JSON body; the request does nothing else.
/// An unknown app id in the path is the caller's 404, before this.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiAuthError {
    /// A required parameter is missing (`body_md5` with a non-empty body).
    #[error("Missing parameter: {0}")]
    MissingParameter(&'static str),
    /// A parameter appears twice: which one was signed would be a guess.
    #[error("Duplicate parameter: {0}")]
    DuplicateParameter(String),
    /// `auth_key` is not the key of the app the path names.
    #[error("Unknown auth_key")]
    UnknownKey,
    /// `auth_version` is not `1.0`.
    #[error("Unsupported auth_version '{0}' (only 1.0 exists)")]
    UnsupportedVersion(String),
    /// `auth_timestamp` is not a number of seconds.
    #[error("Invalid auth_timestamp '{0}': expected seconds since 1970")]
    InvalidTimestamp(String),
    /// `auth_timestamp` is more than 600 s from the server's clock: a
    /// replay, or a sender whose clock is wrong.
    #[error(
        "Timestamp expired: Given timestamp ({timestamp}) not within {TIMESTAMP_WINDOW_SECS}s of server time ({now})"
    )]
    Expired {
        /// What the request said.
        timestamp: u64,
        /// The server's clock.
        now: u64,
    },
    /// `body_md5` is not the MD5 of the body that arrived.
    #[error("Invalid body_md5: the body's MD5 is {actual}")]
    BodyMd5Mismatch {
        /// The hex MD5 of the body received.
        actual: String,
    },
    /// `auth_signature` is not what the app's secret makes of the request.
    /// The message shows the string that should have been signed (not its
    /// signature), to debug a client's signing.
    #[error("Invalid signature: expected the HMAC SHA256 hex digest of {signed:?} with the app's secret")]
    BadSignature {
        /// The string to sign, as the server built it.
        signed: String,
    },
}

impl ApiAuthError {
    /// The HTTP status: 401 when the request is not the app's (key,
    /// signature, timestamp, body), 400 when it is malformed.
    pub fn status(&self) -> u16 {
        match self {
            ApiAuthError::MissingParameter(_)
            | ApiAuthError::DuplicateParameter(_)
            | ApiAuthError::UnsupportedVersion(_)
            | ApiAuthError::InvalidTimestamp(_) => 400,
            ApiAuthError::UnknownKey
            | ApiAuthError::Expired { .. }
            | ApiAuthError::BodyMd5Mismatch { .. }
            | ApiAuthError::BadSignature { .. } => 401,
        }
    }

    /// The JSON body: `{"error": reason, "code": status}` (the server SDKs
    /// show it in their error).
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.to_string(), "code": self.status() }).to_string()
    }
}

/// A verified request's query parameters, keys lowercased, values decoded:
/// what the handler reads (`info`, `filter_by_prefix`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// The value of `key` (lowercase).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The query's pairs, keys lowercased, sorted by key; `decode` chooses
/// percent-decoded (`+` as space) or raw values.
fn pairs(query: &str, decode: bool) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = if decode {
        url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect()
    } else {
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect()
    };
    // Stable: equal keys (refused later) keep their order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// `METHOD\nPATH\nk=v&...` over every pair but `auth_signature`.
fn string_to_sign(method: &str, path: &str, pairs: &[(String, String)]) -> String {
    let mut signed = format!("{}\n{path}\n", method.to_ascii_uppercase());
    let mut first = true;
    for (key, value) in pairs.iter().filter(|(k, _)| k != "auth_signature") {
        if !first {
            signed.push('&');
        }
        first = false;
        signed.push_str(key);
        signed.push('=');
        signed.push_str(value);
    }
    signed
}

fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

impl Credentials<'_> {
    /// Checks an HTTP API request's signature, key, timestamp (against
    /// `now`, seconds since 1970) and body.
    ///
    /// # Errors
    /// [`ApiAuthError`], in this order: a missing or repeated parameter,
    /// another key, another version, a timestamp that is not a number or is
    /// outside the window, a body that does not match `body_md5`, a bad
    /// signature.
    pub fn verify_request(&self, request: &ApiRequest<'_>, now: u64) -> Result<QueryParams, ApiAuthError> {
        let decoded = pairs(request.query, true);
        if let Some(pair) = decoded.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ApiAuthError::DuplicateParameter(pair[0].0.clone()));
        }
        let params = QueryParams(decoded);
        let required = |name: &'static str| params.get(name).ok_or(ApiAuthError::MissingParameter(name));
        let key = required("auth_key")?;
        let timestamp = required("auth_timestamp")?;
        let version = required("auth_version")?;
        let signature = required("auth_signature")?;
        if key != self.key {
            return Err(ApiAuthError::UnknownKey);
        }
        if version != AUTH_VERSION {
            return Err(ApiAuthError::UnsupportedVersion(version.to_owned()));
        }
        let timestamp: u64 = timestamp
            .parse()
            .map_err(|_| ApiAuthError::InvalidTimestamp(timestamp.to_owned()))?;
        if timestamp.abs_diff(now) > TIMESTAMP_WINDOW_SECS {
            return Err(ApiAuthError::Expired { timestamp, now });
        }
        match params.get("body_md5") {
            None if !request.body.is_empty() => return Err(ApiAuthError::MissingParameter("body_md5")),
            None => {}
            // Also on an empty body: the PyPI SDK sends the MD5 of nothing.
            Some(given) => {
                let actual = md5_hex(request.body);
                if !given.eq_ignore_ascii_case(&actual) {
                    return Err(ApiAuthError::BodyMd5Mismatch { actual });
                }
            }
        }
        let signed = string_to_sign(request.method, request.path, &params.0);
        if self.verify(signed.as_bytes(), signature) {
            return Ok(params);
        }
        if request.query.contains(['%', '+']) {
            let raw = string_to_sign(request.method, request.path, &pairs(request.query, false));
            if self.verify(raw.as_bytes(), signature) {
                return Ok(params);
            }
        }
        Err(ApiAuthError::BadSignature { signed })
    }

    /// The query string that signs a request, as a server SDK makes it:
    /// `params` plus `auth_key`, `auth_timestamp`, `auth_version`, `body_md5`
    /// (for a non-empty body) and `auth_signature`, values URL-encoded.
    /// For tests, benchmarks and tools that call the HTTP API.
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
        timestamp: u64,
    ) -> String {
        let timestamp = timestamp.to_string();
        let md5 = (!body.is_empty()).then(|| md5_hex(body));
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        all.push(("auth_key".into(), self.key.to_owned()));
        all.push(("auth_timestamp".into(), timestamp));
        all.push(("auth_version".into(), AUTH_VERSION.into()));
        if let Some(md5) = md5 {
            all.push(("body_md5".into(), md5));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let signature = self.sign(string_to_sign(method, path, &all).as_bytes());
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &all {
            query.append_pair(key, value);
        }
        query.append_pair("auth_signature", &signature);
        query.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of Pusher's worked example (app id 3).
    const DOCS: Credentials<'static> = Credentials {
        key: "278d425bdf160c739803",
        secret: "7ad3773142a6692b25b8",
    };

    /// The worked example's body (the trigger of `foo` on `project-3`).
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    /// Its query, as the HTTP API reference gives it.
    const QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
        &body_md5=ec365a775a4cd0599faeb73354201b6f\
        &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    const WHEN: u64 = 1_353_088_179;

    fn post<'a>(query: &'a str, body: &'static [u8]) -> ApiRequest<'a> {
        ApiRequest {
            method: "POST",
            path: "/apps/3/events",
            query,
            body,
        }
    }

    #[test]
    fn the_worked_example_of_the_http_api_reference_verifies() {
        assert_eq!(md5_hex(BODY), "ec365a775a4cd0599faeb73354201b6f");
        let pairs = pairs(QUERY, true);
        assert_eq!(
            string_to_sign("POST", "/apps/3/events", &pairs),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        let params = DOCS.verify_request(&post(QUERY, BODY), WHEN).unwrap();
        assert_eq!(params.get("auth_version"), Some("1.0"));
        // The same request signed by this module: the same signature.
        let signed = DOCS.sign_request("POST", "/apps/3/events", &[], BODY, WHEN);
        assert!(
            signed.ends_with("auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"),
            "{signed}"
        );
        assert_eq!(DOCS.verify_request(&post(&signed, BODY), WHEN + 599), Ok(params));
    }

    #[test]
    fn parameters_are_signed_sorted_lowercased_and_unescaped() {
        // The reference's own illustration: `Name` = `Something else` signs as
        // `name=Something else`, whether the URL has it raw (the npm and PyPI
        // SDKs), %-encoded or +-encoded (the Go SDK).
        let unsigned = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
                        &auth_version=1.0&name=Something else";
        let signature = DOCS.sign(unsigned.as_bytes());
        let base = "auth_version=1.0&auth_timestamp=1353088179&auth_key=278d425bdf160c739803";
        for name in ["Something else", "Something%20else", "Something+else"] {
            let query = format!("Name={name}&{base}&auth_signature={signature}");
            assert!(DOCS.verify_request(&post(&query, b""), WHEN).is_ok(), "{query}");
        }
        // A literal '%' signed raw, as the npm SDK sends it, passes too.
        let raw = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
                   &auth_version=1.0&filter_by_prefix=a%41";
        let query = format!(
            "filter_by_prefix=a%41&{base}&auth_signature={}",
            DOCS.sign(raw.as_bytes())
        );
        let params = DOCS.verify_request(&post(&query, b""), WHEN).unwrap();
        assert_eq!(
            params.get("filter_by_prefix"),
            Some("aA"),
            "handlers read decoded values"
        );
    }

    #[test]
    fn a_get_is_signed_without_a_body_and_the_pypi_md5_of_nothing_passes() {
        let query = DOCS.sign_request(
            "GET",
            "/apps/3/channels",
            &[
                ("filter_by_prefix", "presence-"),
                ("info", "user_count,subscription_count"),
            ],
            b"",
            WHEN,
        );
        assert!(!query.contains("body_md5"), "{query}");
        let get = ApiRequest {
            method: "get",
            path: "/apps/3/channels",
            query: &query,
            body: b"",
        };
        let params = DOCS.verify_request(&get, WHEN).unwrap();
        assert_eq!(params.get("info"), Some("user_count,subscription_count"));
        assert_eq!(params.get("filter_by_prefix"), Some("presence-"));
        // The PyPI SDK adds body_md5 to a GET: the MD5 of the empty body.
        let with_md5 = DOCS.sign_request(
            "GET",
            "/apps/3/channels",
            &[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")],
            b"",
            WHEN,
        );
        assert!(DOCS
            .verify_request(
                &ApiRequest {
                    query: &with_md5,
                    ..get
                },
                WHEN
            )
            .is_ok());
    }

    #[test]
    fn a_replay_outside_the_window_is_refused_with_pushers_message() {
        let err = DOCS.verify_request(&post(QUERY, BODY), WHEN + 601).unwrap_err();
        assert_eq!(
            err,
            ApiAuthError::Expired {
                timestamp: WHEN,
                now: WHEN + 601
            }
        );
        assert_eq!(err.status(), 401);
        assert_eq!(
            err.to_string(),
            "Timestamp expired: Given timestamp (1353088179) not within 600s of server time (1353088780)"
        );
        // A sender's clock ahead counts the same.
        assert!(DOCS.verify_request(&post(QUERY, BODY), WHEN - 600).is_ok());
        assert!(DOCS.verify_request(&post(QUERY, BODY), WHEN - 601).is_err());
    }

    #[test]
    fn tampering_with_any_part_breaks_the_signature() {
        let bad = |request: ApiRequest<'_>| DOCS.verify_request(&request, WHEN).unwrap_err();
        // Another path (another app), another method.
        let err = bad(ApiRequest {
            path: "/apps/4/events",
            ..post(QUERY, BODY)
        });
        assert_eq!(err.status(), 401);
        let ApiAuthError::BadSignature { signed } = &err else {
            panic!("{err}")
        };
        assert!(signed.starts_with("POST\n/apps/4/events\nauth_key="), "{signed}");
        assert!(err.body().contains(r#""code":401"#), "{}", err.body());
        assert!(matches!(
            bad(ApiRequest {
                method: "PUT",
                ..post(QUERY, BODY)
            }),
            ApiAuthError::BadSignature { .. }
        ));
        // A parameter added after signing (to exclude another socket).
        let added = format!("{QUERY}&socket_id=1.1");
        assert!(matches!(bad(post(&added, BODY)), ApiAuthError::BadSignature { .. }));
        // Another body: its MD5 no longer matches.
        let other: &[u8] = br#"{"name":"foo","channels":["project-4"],"data":"{}"}"#;
        assert_eq!(
            bad(post(QUERY, other)),
            ApiAuthError::BodyMd5Mismatch { actual: md5_hex(other) }
        );
        // Another secret.
        let wrong = Credentials {
            key: DOCS.key,
            secret: "guess",
        };
        assert!(matches!(
            wrong.verify_request(&post(QUERY, BODY), WHEN),
            Err(ApiAuthError::BadSignature { .. })
        ));
    }

    #[test]
    fn missing_wrong_or_repeated_parameters_get_their_own_error() {
        let without = |name: &str| {
            QUERY
                .split('&')
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        for name in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
            "body_md5",
        ] {
            let query = without(name);
            let err = DOCS.verify_request(&post(&query, BODY), WHEN).unwrap_err();
            assert_eq!(err, ApiAuthError::MissingParameter(name));
            assert_eq!(err.status(), 400);
        }
        let other_key = QUERY.replace("auth_key=278d425bdf160c739803", "auth_key=nope");
        let err = DOCS.verify_request(&post(&other_key, BODY), WHEN).unwrap_err();
        assert_eq!((err.clone(), err.status()), (ApiAuthError::UnknownKey, 401));
        assert_eq!(err.body(), r#"{"code":401,"error":"Unknown auth_key"}"#);
        let version = QUERY.replace("auth_version=1.0", "auth_version=2.0");
        assert_eq!(
            DOCS.verify_request(&post(&version, BODY), WHEN),
            Err(ApiAuthError::UnsupportedVersion("2.0".into()))
        );
        let stamp = QUERY.replace("auth_timestamp=1353088179", "auth_timestamp=soon");
        assert_eq!(
            DOCS.verify_request(&post(&stamp, BODY), WHEN).map_err(|e| e.status()),
            Err(400)
        );
        let twice = format!("{QUERY}&AUTH_KEY=278d425bdf160c739803");
        assert_eq!(
            DOCS.verify_request(&post(&twice, BODY), WHEN),
            Err(ApiAuthError::DuplicateParameter("auth_key".into()))
        );
    }
}
