// {{name}}: decides what CMQ is told about each message it pushes.
//
// The component exports cmq:push/handler as the `handler` object; a decision is a
// variant: { tag: 'ack' }, or { tag: 'retry' | 'drop', val: reason } (types in cmq.d.ts).

/** @type {import('./cmq').Handler} */
export const handler = {
  handle(msg) {
    // A message that can never be handled is dropped (and kept in the host's
    // dead-letter journal); one that may be handled later is retried. A thrown error
    // traps the instance: the host answers 500 and CMQ redelivers.
    if (msg.tags.includes('drop')) return { tag: 'drop', val: 'tagged drop' };
    if (msg.tags.includes('retry')) return { tag: 'retry', val: 'tagged retry' };
    console.log(`message ${msg.messageId}: ${new TextDecoder().decode(msg.body)}`);
    return { tag: 'ack' };
  },
};
