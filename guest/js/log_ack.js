// The receiver from CMQ's HTTP subscription documentation, as a handler: print what
// arrived, then acknowledge it. Prints what the Rust `log-ack` example prints, line for
// line. Record fields arrive in camelCase; an absent option is `undefined`.
const orNone = (value) => (value === undefined ? '-' : value);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export const handler = {
  handle(msg) {
    console.log(`message id: ${msg.messageId}`);
    console.log(`request id: ${orNone(msg.requestId)}`);
    console.log(`tags: ${msg.tags.join(', ')}`);
    console.log(`topic owner: ${orNone(msg.topicOwner)}`);
    console.log(`topic name: ${orNone(msg.topicName)}`);
    console.log(`subscription: ${orNone(msg.subscriptionName)}`);
    console.log(`publish time: ${orNone(msg.publishTime)}`); // s64: a BigInt
    console.log(`format: ${msg.format === 'json' ? 'Json' : 'Simplified'}`);
    const body = msg.body; // list<u8>: a Uint8Array
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      // SIMPLIFIED pushes carry the raw body, which need not be text.
      console.log(`body (${body.length} bytes, not UTF-8): ${hex(body)}`);
      return { tag: 'ack' };
    }
    console.log(`body (${body.length} bytes): ${text}`);
    return { tag: 'ack' };
  },
};
