//! HTTP bodies as the service and the edge read them: the strict JSON
//! parse (checked against serde_json: it accepts nothing serde_json
//! refuses, and what it accepts it reads the same), form bodies, and the
//! leads of a body.
#![no_main]

use leadgate_ingest::body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plain = serde_json::from_slice::<serde_json::Value>(data);
    match body::parse_json(data) {
        Ok(v) => {
            let plain = plain.expect("the strict parse accepted what serde_json refuses");
            assert_eq!(v, plain, "the strict parse read another value");
            let _ = body::leads(v, 1000);
        }
        Err(e) => {
            assert_eq!(e.status, 400);
            if e.code == "body.json" {
                assert!(plain.is_err(), "refused as bad JSON what serde_json reads");
            }
        }
    }
    // A form's fields, encoded again as a browser would, read the same.
    if let Ok(fields) = body::form_fields(data) {
        let mut again = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            again.append_pair(k, v.as_str().expect("form values are strings"));
        }
        let again = body::form_fields(again.finish().as_bytes()).expect("a re-encoded form reads");
        assert_eq!(again, fields);
    }
});
