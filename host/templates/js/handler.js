// {{name}}: decides what CMQ is told about each message it pushes.
//
// The component exports cmq:push/handler as the `handler` object; a decision is a
// variant: { tag: 'ack' }, or { tag: 'retry' | 'drop', val: reason } (types in cmq.d.ts).
// Its settings come through wasi:config/store (`get(name)`: a string, or undefined).
import { get } from 'wasi:config/store@0.2.0-rc.1';

/** @type {import('./cmq').Handler} */
export const handler = {
  handle(msg) {
    // A message that can never be handled is dropped (and kept in the host's
    // dead-letter journal); one that may be handled later is retried. A thrown error
    // traps the instance: the host answers 500 and CMQ redelivers.
    if (msg.tags.includes('drop')) return { tag: 'drop', val: 'tagged drop' };
    if (msg.tags.includes('retry')) return { tag: 'retry', val: 'tagged retry' };
    // A setting: `cmq-host --config-var greeting=hi`, a route's [routes.NAME.config],
    // `wasmtime serve -S config-var=greeting=hi`; undefined when none is given (an
    // empty one counts as none, as Spin gives every variable a value).
    const greeting = get('greeting') || 'hello';
    console.log(`${greeting}, message ${msg.messageId}: ${new TextDecoder().decode(msg.body)}`);
    return { tag: 'ack' };
  },
};
