//! Webhook signatures, verified the same way by the host service
//! (`leadgate serve`) and the edge component: one crate, no second copy.
//!
//! Two schemes:
//! - **HubSpot v3** ([`hubspot_v3`]): `X-HubSpot-Signature-v3` is the
//!   base64 HMAC-SHA256, keyed by the app's client secret, of
//!   `method + uri + body + timestamp`, where `timestamp` is the
//!   `X-HubSpot-Request-Timestamp` header (milliseconds since the epoch).
//! - **leadgate** ([`leadgate_v1`]), for any system that posts a lead
//!   itself: `X-Leadgate-Signature: t=<ms>,v1=<hex>`, the hex HMAC-SHA256 of
//!   `"<ms>.<body>"`.
//!
//! Both refuse a timestamp more than the window (5 minutes by default) in
//! the past *or* the future, and compare signatures in constant time. The
//! clock is the caller's: pass `now_ms`, so a sandboxed component can use the
//! time its host gives it, and tests can use a fixed one.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HubSpot's replay window, and the default for both schemes.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Header names, lower case as HTTP/2 and most servers present them.
pub const HUBSPOT_SIGNATURE: &str = "x-hubspot-signature-v3";
pub const HUBSPOT_TIMESTAMP: &str = "x-hubspot-request-timestamp";
pub const LEADGATE_SIGNATURE: &str = "x-leadgate-signature";

/// Why a request's signature was refused. The message is safe to log and to
/// return: it never contains the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed: header {0} is missing")]
    Missing(&'static str),
    #[error("header {header} is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    #[error("the signature timestamp is {age_ms} ms old; at most {window_ms} ms is accepted")]
    Stale { age_ms: i64, window_ms: i64 },
    #[error(
        "the signature timestamp is {ahead_ms} ms in the future; at most {window_ms} ms is accepted"
    )]
    Future { ahead_ms: i64, window_ms: i64 },
    #[error("the signature does not match the request (wrong secret, or the request was altered)")]
    Mismatch,
    #[error("no signing secret is configured for this endpoint")]
    NoSecret,
}

impl SignatureError {
    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "signature.missing",
            SignatureError::Malformed { .. } => "signature.malformed",
            SignatureError::Stale { .. } => "signature.stale",
            SignatureError::Future { .. } => "signature.future",
            SignatureError::Mismatch => "signature.mismatch",
            SignatureError::NoSecret => "signature.no_secret",
        }
    }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn fresh(timestamp_ms: i64, now_ms: i64, window_ms: i64) -> Result<(), SignatureError> {
    let age = now_ms.saturating_sub(timestamp_ms);
    if age > window_ms {
        return Err(SignatureError::Stale {
            age_ms: age,
            window_ms,
        });
    }
    if -age > window_ms {
        return Err(SignatureError::Future {
            ahead_ms: -age,
            window_ms,
        });
    }
    Ok(())
}

/// HubSpot decodes these percent-escapes in the URI before signing.
const HUBSPOT_DECODED: &[(&str, &str)] = &[
    ("%3A", ":"),
    ("%2F", "/"),
    ("%3F", "?"),
    ("%40", "@"),
    ("%21", "!"),
    ("%24", "$"),
    ("%27", "'"),
    ("%28", "("),
    ("%29", ")"),
    ("%2A", "*"),
    ("%2C", ","),
    ("%3B", ";"),
];

fn hubspot_uri(uri: &str) -> String {
    let mut out = uri.to_string();
    for (from, to) in HUBSPOT_DECODED {
        if out.contains(from) || out.contains(&from.to_ascii_lowercase()) {
            out = out
                .replace(from, to)
                .replace(&from.to_ascii_lowercase(), to);
        }
    }
    out
}

/// HubSpot v3 signing and verification.
pub mod hubspot_v3 {
    use super::*;

    /// The signature HubSpot sends for this request (base64).
    pub fn sign(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
        let uri = hubspot_uri(uri);
        let raw = mac(
            secret,
            &[
                method.as_bytes(),
                uri.as_bytes(),
                body,
                timestamp.as_bytes(),
            ],
        );
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Verifies a request. `uri` is the full URL HubSpot called
    /// (`https://host/path?query`); `signature` and `timestamp` are the
    /// header values, `None` when absent.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        secret: &[u8],
        method: &str,
        uri: &str,
        body: &[u8],
        signature: Option<&str>,
        timestamp: Option<&str>,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), SignatureError> {
        if secret.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let signature = signature.ok_or(SignatureError::Missing(HUBSPOT_SIGNATURE))?;
        let timestamp = timestamp.ok_or(SignatureError::Missing(HUBSPOT_TIMESTAMP))?;
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed {
                header: HUBSPOT_TIMESTAMP,
                reason: "not milliseconds since the epoch",
            })?;
        let given = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed {
                header: HUBSPOT_SIGNATURE,
                reason: "not base64",
            })?;
        fresh(ts, now_ms, window_ms)?;
        let uri = hubspot_uri(uri);
        let expected = mac(
            secret,
            &[
                method.as_bytes(),
                uri.as_bytes(),
                body,
                timestamp.trim().as_bytes(),
            ],
        );
        if bool::from(expected.ct_eq(&given)) && !expected.is_empty() {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// leadgate's own scheme, for senders that post the lead itself.
pub mod leadgate_v1 {
    use super::*;

    /// The header value for `body` signed at `timestamp_ms`.
    pub fn sign(secret: &[u8], body: &[u8], timestamp_ms: i64) -> String {
        let t = timestamp_ms.to_string();
        let raw = mac(secret, &[t.as_bytes(), b".", body]);
        format!("t={t},v1={}", hex(&raw))
    }

    /// Verifies `header` (the `X-Leadgate-Signature` value, `None` when
    /// absent) against `body`. Several `v1=` entries are allowed, so a
    /// sender can sign with an old and a new secret while rotating.
    pub fn verify(
        secret: &[u8],
        body: &[u8],
        header: Option<&str>,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), SignatureError> {
        if secret.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let header = header.ok_or(SignatureError::Missing(LEADGATE_SIGNATURE))?;
        let mut t: Option<&str> = None;
        let mut sigs: Vec<&str> = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.trim()),
                Some(("v1", v)) => sigs.push(v.trim()),
                _ => {}
            }
        }
        let malformed = |reason| SignatureError::Malformed {
            header: LEADGATE_SIGNATURE,
            reason,
        };
        let t = t.ok_or(malformed("no t= timestamp"))?;
        if sigs.is_empty() {
            return Err(malformed("no v1= signature"));
        }
        let ts: i64 = t
            .parse()
            .map_err(|_| malformed("t= is not milliseconds since the epoch"))?;
        fresh(ts, now_ms, window_ms)?;
        let expected = hex(&mac(secret, &[t.as_bytes(), b".", body]));
        let mut ok = subtle::Choice::from(0);
        for s in sigs {
            ok |= expected.as_bytes().ct_eq(s.to_ascii_lowercase().as_bytes());
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;
    const URI: &str = "https://leadgate.example.com/v1/webhooks/hubspot/acme?x=1";

    #[test]
    fn hubspot_known_vector() {
        // Computed independently: printf 'POST%s%s%s' URI BODY TS |
        //   openssl dgst -sha256 -hmac secret -binary | base64
        let body = br#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":51}]"#;
        let sig = hubspot_v3::sign(b"secret", "POST", URI, body, "1767225600000");
        assert_eq!(sig, "y6OjGcf5YnOiBWxY4YTc0FM6xT1LH40zDqf8dBmiXaY=");
    }

    #[test]
    fn hubspot_valid_wrong_secret_stale_future_tampered() {
        let body = br#"[{"eventId":7}]"#;
        let ts = NOW.to_string();
        let sig = hubspot_v3::sign(b"s3cret", "POST", URI, body, &ts);
        let check = |secret: &[u8], body: &[u8], sig: Option<&str>, ts: Option<&str>| {
            hubspot_v3::verify(secret, "POST", URI, body, sig, ts, NOW, DEFAULT_WINDOW_MS)
        };
        assert_eq!(check(b"s3cret", body, Some(&sig), Some(&ts)), Ok(()));
        assert_eq!(
            check(b"other", body, Some(&sig), Some(&ts)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(b"s3cret", br#"[{"eventId":8}]"#, Some(&sig), Some(&ts)),
            Err(SignatureError::Mismatch)
        );
        let old = (NOW - DEFAULT_WINDOW_MS - 1).to_string();
        let old_sig = hubspot_v3::sign(b"s3cret", "POST", URI, body, &old);
        assert!(matches!(
            check(b"s3cret", body, Some(&old_sig), Some(&old)),
            Err(SignatureError::Stale { .. })
        ));
        let ahead = (NOW + DEFAULT_WINDOW_MS + 1).to_string();
        let ahead_sig = hubspot_v3::sign(b"s3cret", "POST", URI, body, &ahead);
        assert!(matches!(
            check(b"s3cret", body, Some(&ahead_sig), Some(&ahead)),
            Err(SignatureError::Future { .. })
        ));
        assert_eq!(
            check(b"s3cret", body, None, Some(&ts)),
            Err(SignatureError::Missing(HUBSPOT_SIGNATURE))
        );
        assert_eq!(
            check(b"s3cret", body, Some("%%%"), Some(&ts)).map_err(|e| e.code()),
            Err("signature.malformed")
        );
        assert_eq!(
            check(b"", body, Some(&sig), Some(&ts)),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn hubspot_uri_escapes_are_decoded_before_signing() {
        let a = hubspot_v3::sign(b"k", "POST", "https://h/p?email=a%40b.com", b"", "1");
        let b = hubspot_v3::sign(b"k", "POST", "https://h/p?email=a@b.com", b"", "1");
        assert_eq!(a, b);
    }

    #[test]
    fn leadgate_valid_rotation_and_refusals() {
        let body = br#"{"email":"a@b.com"}"#;
        let header = leadgate_v1::sign(b"new", body, NOW);
        let verify = |secret: &[u8], body: &[u8], h: Option<&str>| {
            leadgate_v1::verify(secret, body, h, NOW, DEFAULT_WINDOW_MS)
        };
        assert_eq!(verify(b"new", body, Some(&header)), Ok(()));
        assert_eq!(
            verify(b"old", body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // Signed with two secrets during a rotation: either verifies.
        let old = leadgate_v1::sign(b"old", body, NOW);
        let both = format!("{header},{}", old.split_once(',').map_or("", |(_, v)| v));
        assert_eq!(verify(b"old", body, Some(&both)), Ok(()));
        assert_eq!(verify(b"new", body, Some(&both)), Ok(()));
        assert_eq!(
            verify(b"new", b"{\"email\":\"x@b.com\"}", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        let stale = leadgate_v1::sign(b"new", body, NOW - 301_000);
        assert!(matches!(
            verify(b"new", body, Some(&stale)),
            Err(SignatureError::Stale { .. })
        ));
        let future = leadgate_v1::sign(b"new", body, NOW + 301_000);
        assert!(matches!(
            verify(b"new", body, Some(&future)),
            Err(SignatureError::Future { .. })
        ));
        assert_eq!(
            verify(b"new", body, Some("v1=abc")).map_err(|e| e.code()),
            Err("signature.malformed")
        );
    }
}
