// Decides by tag, as the Rust `by-tag` example does: tag `retry` asks CMQ to
// redeliver, tag `drop` drops the message, anything else acks.
//
// The component exports interface cmq:push/handler@0.2.0 as the `handler` object; a
// decision is a variant: { tag: 'ack' }, or { tag: 'retry' | 'drop', val: reason }.
export const handler = {
  handle(msg) {
    if (msg.tags.includes('retry')) return { tag: 'retry', val: 'tagged retry' };
    if (msg.tags.includes('drop')) return { tag: 'drop', val: 'tagged drop' };
    return { tag: 'ack' };
  },
};
