//! Access tokens (JWT), checked before the upgrade.
//!
//! With `--jwt-secret` (HS256) or `--jwt-public-key` (RS256, ES256, ...),
//! every WebSocket request must carry a token: `?token=...` in the URL, or,
//! for browsers, which cannot set headers on a WebSocket, an extra offered
//! subprotocol `bearer.<token>` next to `wshub.v1`. The token is checked at
//! the handshake, while the answer can still be an HTTP 401 or 403; what it
//! grants (a nickname, the rooms it may enter, when it expires) then goes
//! with the connection. A token never appears in a log line or a response:
//! only the reason it was refused does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::metrics::RefusedUpgrade;
use crate::protocol::v1::{is_valid_nick, MAX_USER_BYTES};

/// The prefix of the subprotocol value that carries a token.
pub const BEARER_PREFIX: &str = "bearer.";

/// An HMAC secret; its `Debug` never shows it, so a logged `Config` cannot
/// leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Where token signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// A shared secret: HS256 (HS384 and HS512 are accepted too).
    Secret(Secret),
    /// A PEM public key file: RSA (RS256/384/512, PS256/384/512), EC P-256
    /// (ES256) or P-384 (ES384), or Ed25519 (EdDSA).
    PublicKey(PathBuf),
}

/// What a token must say besides being signed and unexpired. Without
/// rules, `aud` and `iss` are not looked at: give wshub a key of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// `--jwt-audience`: the token's `aud` must name it (a token for another
    /// service, signed by the same issuer, is then refused).
    pub audience: Option<String>,
    /// `--jwt-issuer`: the token's `iss` must be it.
    pub issuer: Option<String>,
}

/// Why the token settings cannot be used; start-up stops on any.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key file could not be read.
    #[error("cannot read JWT public key {path}: {source}")]
    Unreadable {
        /// The file named by `--jwt-public-key`.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The key file holds no usable public key.
    #[error("invalid JWT public key {path}: {reason}")]
    InvalidKey {
        /// The file named by `--jwt-public-key`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks tokens: the key and the rules, built once at start-up.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// What a valid token grants its connection.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The nickname (`name`, else `sub`), if the token has one: with
    /// tokens required, the connection keeps it (`nick` cannot change it).
    pub nick: Option<Arc<str>>,
    /// The user id (`sub`, when not empty): carried by the holder's
    /// messages and presence entries, so that people who share a name can
    /// be told apart.
    pub user: Option<Arc<str>>,
    /// The rooms it may join, if restricted (`rooms`).
    pub rooms: Option<Box<[Box<str>]>>,
    /// Time left until `exp`, measured at the check.
    pub expires_in: Duration,
}

impl Grant {
    /// Whether the token lets its holder into `room`.
    pub fn allows(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| &**r == room))
    }
}

/// Why a handshake was refused for its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No valid token: HTTP 401, with the reason (never the token).
    Unauthorized(&'static str),
    /// A valid token that does not cover the room asked for: HTTP 403.
    ForbiddenRoom,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unauthorized(reason) => write!(f, "unauthorized: {reason}"),
            Rejection::ForbiddenRoom => write!(f, "the token does not allow this room"),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::ForbiddenRoom => StatusCode::FORBIDDEN,
        };
        let mut response = (status, self.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A token refusal's `reason` label in `wshub_upgrades_refused_total`.
impl From<Rejection> for RefusedUpgrade {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Unauthorized(_) => RefusedUpgrade::Unauthorized,
            Rejection::ForbiddenRoom => RefusedUpgrade::ForbiddenRoom,
        }
    }
}

/// The claims wshub reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    /// Optional here so that its absence is reported as such (the
    /// validation requires it).
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl Verifier {
    /// Loads the key and fixes the accepted algorithms: the key's family
    /// only, so a token cannot pick a weaker check (no `none`, no HMAC with
    /// the public key as secret).
    ///
    /// # Errors
    /// [`AuthError`] naming the key file and what is wrong with it.
    pub fn new(source: &AuthSource, rules: &TokenRules) -> Result<Verifier, AuthError> {
        let (key, algorithms) = match source {
            AuthSource::Secret(secret) => {
                if secret.expose().len() < 32 {
                    tracing::warn!("--jwt-secret is shorter than 32 bytes: HS256 wants at least 256 random bits");
                }
                (DecodingKey::from_secret(secret.expose()), HMAC.to_vec())
            }
            AuthSource::PublicKey(path) => load_public_key(path)?,
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        // The expiry is enforced to the second, at the handshake and on the
        // live connection alike: no leeway, so both agree.
        validation.leeway = 0;
        validation.validate_nbf = true;
        // Audience and issuer only when asked for; a required one must be
        // present, not merely right when present.
        validation.validate_aud = rules.audience.is_some();
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        Ok(Verifier { key, validation })
    }

    /// Checks `token`; on success, what it grants.
    ///
    /// # Errors
    /// [`Rejection::Unauthorized`] with a reason fit for a log line.
    pub fn verify(&self, token: &str) -> Result<Grant, Rejection> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| Rejection::Unauthorized(reason(e.kind())))?;
        let claims = data.claims;
        let user = match claims.sub.as_deref() {
            None | Some("") => None,
            Some(sub) if sub.len() > MAX_USER_BYTES => {
                return Err(Rejection::Unauthorized("the token's sub is over 256 bytes"))
            }
            Some(sub) => Some(Arc::from(sub)),
        };
        let nick = match claims.name.or(claims.sub) {
            Some(nick) if is_valid_nick(&nick) => Some(Arc::from(nick.as_str())),
            Some(_) => return Err(Rejection::Unauthorized("the token's name is not a valid nickname")),
            None => None,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let exp = claims.exp.ok_or(Rejection::Unauthorized("token has no exp claim"))?;
        let expires_in = Duration::from_secs(exp).saturating_sub(now);
        if expires_in.is_zero() {
            return Err(Rejection::Unauthorized("token expired"));
        }
        Ok(Grant {
            nick,
            user,
            rooms: claims
                .rooms
                .map(|rooms| rooms.into_iter().map(String::into_boxed_str).collect()),
            expires_in,
        })
    }
}

/// A log-safe reason for a failed check: never the token or its claims.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "signature algorithm not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => "token has no aud claim",
            "iss" => "token has no iss claim",
            _ => "token has no exp claim",
        },
        ErrorKind::InvalidAudience => "token is for another audience (aud)",
        ErrorKind::InvalidIssuer => "token is from another issuer (iss)",
        ErrorKind::InvalidClaimFormat(_) => "malformed claims",
        _ => "malformed token",
    }
}

fn load_public_key(path: &Path) -> Result<(DecodingKey, Vec<Algorithm>), AuthError> {
    let invalid = |reason: &str| AuthError::InvalidKey {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let pem = std::fs::read(path).map_err(|source| AuthError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(invalid("this is a private key; give the public key (PEM 'PUBLIC KEY')"));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, RSA.to_vec()));
    }
    // The curve decides the algorithm; parsing the key for it (a check of
    // a dummy signature) also rejects a malformed point now, not at the
    // first client.
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        for algorithm in [Algorithm::ES256, Algorithm::ES384] {
            if jsonwebtoken::crypto::verify("AAAA", b"a.b", &key, algorithm).is_ok() {
                return Ok((key, vec![algorithm]));
            }
        }
        return Err(invalid("an EC key, but not a valid P-256 or P-384 public key"));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        if jsonwebtoken::crypto::verify("AAAA", b"a.b", &key, Algorithm::EdDSA).is_ok() {
            return Ok((key, vec![Algorithm::EdDSA]));
        }
        return Err(invalid("an Ed25519 key, but not a valid one"));
    }
    Err(invalid("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)"))
}

/// The token a handshake carries: `?token=` first, else an offered
/// `bearer.<token>` subprotocol.
pub fn presented_token<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let from_query = uri
        .query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("token=")));
    from_query.or_else(|| {
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(BEARER_PREFIX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a test secret of at least thirty-two bytes";

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(&AuthSource::Secret(Secret::new(SECRET)), &TokenRules::default()).unwrap()
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let rules = TokenRules {
            audience: Some("chat".into()),
            issuer: Some("https://id.example".into()),
        };
        let strict = Verifier::new(&AuthSource::Secret(Secret::new(SECRET)), &rules).unwrap();
        let exp = now() + 60;
        let right = json!({"sub": "u1", "exp": exp, "aud": "chat", "iss": "https://id.example"});
        assert!(strict.verify(&token(right.clone())).is_ok());
        let among = json!({"sub": "u1", "exp": exp, "aud": ["billing", "chat"], "iss": "https://id.example"});
        assert!(strict.verify(&token(among)).is_ok(), "one of several audiences");
        let refused = |claims: serde_json::Value| match strict.verify(&token(claims)) {
            Err(Rejection::Unauthorized(reason)) => reason,
            other => panic!("accepted: {other:?}"),
        };
        let other_aud = json!({"sub": "u1", "exp": exp, "aud": "billing", "iss": "https://id.example"});
        assert_eq!(refused(other_aud), "token is for another audience (aud)");
        let other_iss = json!({"sub": "u1", "exp": exp, "aud": "chat", "iss": "https://evil.example"});
        assert_eq!(refused(other_iss), "token is from another issuer (iss)");
        assert_eq!(
            refused(json!({"sub": "u1", "exp": exp, "iss": "https://id.example"})),
            "token has no aud claim"
        );
        assert_eq!(
            refused(json!({"sub": "u1", "exp": exp, "aud": "chat"})),
            "token has no iss claim"
        );
        // Without rules the same claims are simply not looked at.
        assert!(verifier().verify(&token(right)).is_ok());
        assert!(verifier()
            .verify(&token(json!({"sub": "u1", "exp": exp, "aud": "billing"})))
            .is_ok());
    }

    #[test]
    fn a_valid_token_grants_its_claims() {
        let grant = verifier()
            .verify(&token(
                json!({"sub": "u1", "name": "ann", "exp": now() + 60, "rooms": ["a"]}),
            ))
            .unwrap();
        assert_eq!(grant.nick.as_deref(), Some("ann"));
        assert_eq!(grant.user.as_deref(), Some("u1"), "the user id is the sub");
        assert!(grant.allows("a") && !grant.allows("b"));
        assert!(grant.expires_in > Duration::from_secs(50));
        let grant = verifier()
            .verify(&token(json!({"sub": "u1", "exp": now() + 60})))
            .unwrap();
        assert_eq!(grant.nick.as_deref(), Some("u1"));
        assert_eq!(grant.user.as_deref(), Some("u1"));
        assert!(grant.allows("anything"));
        let grant = verifier()
            .verify(&token(json!({"name": "ann", "exp": now() + 60})))
            .unwrap();
        assert_eq!(
            (grant.nick.as_deref(), grant.user),
            (Some("ann"), None),
            "no sub, no user id"
        );
        let long = "u".repeat(MAX_USER_BYTES + 1);
        assert!(matches!(
            verifier().verify(&token(json!({"sub": long, "name": "ann", "exp": now() + 60}))),
            Err(Rejection::Unauthorized("the token's sub is over 256 bytes"))
        ));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let v = verifier();
        let reason = |t: &str| match v.verify(t) {
            Err(Rejection::Unauthorized(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(reason(&token(json!({"exp": now() - 10}))), "token expired");
        assert_eq!(reason(&token(json!({"sub": "x"}))), "token has no exp claim");
        assert_eq!(reason("not.a.jwt"), "malformed token");
        assert_eq!(reason(""), "malformed token");
        assert_eq!(
            reason(&token(json!({"name": "", "exp": now() + 60}))),
            "the token's name is not a valid nickname"
        );
        let other = encode(
            &Header::default(),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret, another thirty-two bytes"),
        )
        .unwrap();
        assert_eq!(reason(&other), "bad signature");
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let shown = format!("{:?}", AuthSource::Secret(Secret::new(SECRET)));
        assert!(!shown.contains("secret of"), "{shown}");
    }

    #[test]
    fn tokens_come_from_the_query_or_the_subprotocol() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/ws?x=1&token=abc.def.ghi".parse().unwrap();
        assert_eq!(presented_token(&uri, &headers), Some("abc.def.ghi"));
        let uri: Uri = "/ws".parse().unwrap();
        assert_eq!(presented_token(&uri, &headers), None);
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("wshub.v1, bearer.abc.def.ghi"),
        );
        assert_eq!(presented_token(&uri, &headers), Some("abc.def.ghi"));
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Verifier::new(&AuthSource::PublicKey(missing.clone()), &TokenRules::default()).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let err = Verifier::new(&AuthSource::PublicKey(garbage), &TokenRules::default()).unwrap_err();
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let private = dir.path().join("private.pem");
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        let err = Verifier::new(&AuthSource::PublicKey(private), &TokenRules::default()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let public = dir.path().join("public.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let verifier = Verifier::new(&AuthSource::PublicKey(public), &TokenRules::default()).unwrap();
        assert_eq!(verifier.validation.algorithms, [Algorithm::ES256]);
    }
}
