//! `X-Pusher-Signature`: the hex HMAC-SHA256 of a webhook's body, keyed
//! with the app's secret, so that the backend can tell wshub's POSTs from
//! anyone else's. The same signature as
//! [`Credentials::webhook_signature`](crate::apps::signature::Credentials::webhook_signature),
//! with the key schedule computed once per target rather than per POST.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// An app secret made ready to sign: the HMAC's key schedule is computed
/// once per target, not once per POST.
#[derive(Clone)]
pub(crate) struct Signer(Hmac<Sha256>);

impl Signer {
    pub(crate) fn new(secret: &str) -> Signer {
        // HMAC takes keys of any length; this cannot fail.
        Signer(Hmac::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length"))
    }

    /// The lowercase hex HMAC-SHA256 of `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_case_2() {
        // RFC 4231, HMAC-SHA256 test case 2: key "Jefe".
        let signer = Signer::new("Jefe");
        assert_eq!(
            signer.sign(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signer_reused_signs_each_body_on_its_own() {
        let signer = Signer::new("Jefe");
        let first = signer.sign(b"a");
        assert_ne!(signer.sign(b"b"), first);
        assert_eq!(signer.sign(b"a"), first, "no state carried over between bodies");
        assert_eq!(first.len(), 64);
    }
}
