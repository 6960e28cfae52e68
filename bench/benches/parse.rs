//! Parsing one push in each format with `cmq-message`, the host's parser.
//!
//!     cargo bench -p cmq-bench --bench parse

use std::hint::black_box;

use cmq_message::{ExpectedFormat, PushHeaders};
use criterion::{Criterion, criterion_group, criterion_main};

const JSON_BODY: &[u8] = br#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;

fn headers() -> PushHeaders {
    PushHeaders {
        request_id: Some("2394928734".into()),
        message_id: Some("6942316962".into()),
        message_tag: Some("a, b".into()),
    }
}

fn parse(c: &mut Criterion) {
    let headers = headers();
    let mut group = c.benchmark_group("parse");
    group.bench_function("json", |b| {
        b.iter(|| cmq_message::parse(ExpectedFormat::Json, &headers, black_box(JSON_BODY)))
    });
    group.bench_function("simplified", |b| {
        b.iter(|| {
            cmq_message::parse(
                ExpectedFormat::Simplified,
                &headers,
                black_box(b"test message"),
            )
        })
    });
    group.bench_function("auto (json body)", |b| {
        b.iter(|| cmq_message::parse(ExpectedFormat::Auto, &headers, black_box(JSON_BODY)))
    });
    let large = vec![b'x'; 1 << 20];
    group.bench_function("simplified 1 MiB", |b| {
        b.iter(|| cmq_message::parse(ExpectedFormat::Simplified, &headers, black_box(&large)))
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
