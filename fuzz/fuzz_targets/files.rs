//! Lead files as `leadgate run` reads them: CSV (delimiter sniffing,
//! header aliases) and NDJSON, record by record until the end. A bad
//! record is a malformed row with a reason, never a panic.
#![no_main]

use leadgate_ingest::{Format, Limits, Mapping, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mapping) = Mapping::parse::<&str>(&[]) else {
        return;
    };
    let limits = Limits {
        max_field_bytes: 256,
        max_record_bytes: 4096,
    };
    for format in [Format::Csv, Format::Ndjson] {
        let input = Box::new(std::io::Cursor::new(data.to_vec()));
        let Ok(mut reader) = Reader::new(input, format, mapping.clone(), limits) else {
            continue;
        };
        let _ = reader.columns();
        let mut n = 0;
        while let Some(record) = reader.next_record() {
            let _ = record;
            n += 1;
            assert!(n <= data.len() + 1, "more records than bytes");
        }
    }
});
