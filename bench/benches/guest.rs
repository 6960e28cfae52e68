//! Instantiate-and-call: one message through a fresh instance of the `ack` guest, with
//! no HTTP, as cmq-host does for every push. Needs `cargo xtask guests` first.
//!
//!     cargo bench -p cmq-bench --bench guest

use std::path::PathBuf;

use cmq_host::{Receiver, ReceiverOptions};
use criterion::{Criterion, criterion_group, criterion_main};

fn message() -> cmq_message::Message {
    cmq_message::Message {
        message_id: "6942316962".into(),
        request_id: Some("2394928734".into()),
        tags: vec!["a".into(), "b".into()],
        topic_owner: Some("100015036".into()),
        topic_name: Some("MyTopic".into()),
        subscription_name: Some("mysubscription".into()),
        publish_time: Some(11203432),
        body: b"test message".to_vec(),
        format: cmq_message::Format::Json,
        attempt: None,
    }
}

fn instantiate_and_call(c: &mut Criterion) {
    let component = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests/ack.wasm");
    assert!(
        component.exists(),
        "{} is missing: run `cargo xtask guests`",
        component.display()
    );
    let receiver = Receiver::load(&component, ReceiverOptions::default()).expect("loads");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    c.bench_function("instantiate and call (ack guest)", |b| {
        b.to_async(&runtime).iter(|| async {
            let decision = receiver
                .handle_on_first_route(message())
                .await
                .expect("no fault");
            assert!(matches!(decision, cmq_host::Decision::Ack));
        })
    });
}

criterion_group!(benches, instantiate_and_call);
criterion_main!(benches);
