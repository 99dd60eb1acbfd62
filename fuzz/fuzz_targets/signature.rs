//! Webhook signature headers (HubSpot v3, leadgate v1): whatever a
//! sender puts in them is refused with a reason or verified, never a
//! panic; a signature made with the secret always verifies.
#![no_main]

use leadgate_signature::{hubspot_v3, leadgate_v1};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_780_000_000_000;
const WINDOW: i64 = 300_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let header = parts.next().unwrap_or("");
    let timestamp = parts.next().unwrap_or("");
    let uri = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();
    let _ = leadgate_v1::verify(b"secret", body, Some(header), NOW, WINDOW);
    let _ = hubspot_v3::verify(
        b"secret",
        "POST",
        uri,
        body,
        Some(header),
        Some(timestamp),
        NOW,
        WINDOW,
    );
    let signed = leadgate_v1::sign(b"secret", body, NOW);
    assert!(leadgate_v1::verify(b"secret", body, Some(&signed), NOW, WINDOW).is_ok());
    let ts = NOW.to_string();
    let signed = hubspot_v3::sign(b"secret", "POST", uri, body, &ts);
    assert!(
        hubspot_v3::verify(
            b"secret",
            "POST",
            uri,
            body,
            Some(&signed),
            Some(&ts),
            NOW,
            WINDOW
        )
        .is_ok()
    );
});
