//! Any bytes as a push (format, headers and body) parse or give a one-line reason;
//! a parsed JSON message re-serialises and parses back to itself.
#![no_main]

use cmq_message::{ExpectedFormat, Format, PushHeaders, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the endpoint's format; then three header values and the body,
    // separated by 0xff bytes.
    let Some((&selector, rest)) = data.split_first() else { return };
    let expected = match selector % 3 {
        0 => ExpectedFormat::Auto,
        1 => ExpectedFormat::Json,
        _ => ExpectedFormat::Simplified,
    };
    let mut parts = rest.splitn(4, |&b| b == 0xff);
    let mut header = || parts.next().map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    let headers = PushHeaders { request_id: header(), message_id: header(), message_tag: header() };
    let body = parts.next().unwrap_or_default();

    match parse(expected, &headers, body) {
        Ok(message) => {
            if message.format == Format::Json {
                let envelope = message.to_json_envelope().expect("a parsed JSON message has an envelope");
                let again = parse(ExpectedFormat::Json, &headers, &envelope).expect("its envelope parses");
                assert_eq!(again, message);
            }
        }
        Err(err) => assert!(!err.to_string().contains('\n')),
    }
});
