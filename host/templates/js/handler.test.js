// Tests of {{module}}.js, run with `npm test` in this folder, no toolchain: the
// handler's decisions on messages built as CMQ pushes them. The settings it reads come
// from `globalThis.settings` (see wasi.test-stand-ins.js).
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';

import { handler } from './{{module}}.js';

/** A message as the documented push carries it. */
function message(fields = {}) {
  return {
    messageId: '6942316962',
    requestId: '2394928734',
    tags: [],
    topicOwner: '100015036',
    topicName: 'MyTopic',
    subscriptionName: 'mysubscription',
    publishTime: 11203432n,
    body: new TextEncoder().encode('test message'),
    format: 'json',
    attempt: undefined,
    ...fields,
  };
}

test('the documented push is acknowledged', () => {
  assert.deepEqual(handler.handle(message()), { tag: 'ack' });
});

test('tags ask for a retry or a drop', () => {
  assert.deepEqual(handler.handle(message({ tags: ['retry'] })), { tag: 'retry', val: 'tagged retry' });
  assert.deepEqual(handler.handle(message({ tags: ['a', 'drop'] })), { tag: 'drop', val: 'tagged drop' });
});

test('the greeting is read from the settings', () => {
  for (const [settings, printed] of [[{}, 'hello, message'], [{ greeting: 'hi' }, 'hi, message']]) {
    globalThis.settings = settings;
    const log = mock.method(console, 'log', () => {});
    handler.handle(message());
    assert.ok(log.mock.calls[0].arguments[0].startsWith(printed), log.mock.calls[0].arguments[0]);
    log.mock.restore();
  }
  globalThis.settings = {};
});
