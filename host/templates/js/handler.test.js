// Tests of {{module}}.js, run with `node --test` in this folder, no toolchain: the
// handler's decisions on messages built as CMQ pushes them.
import { test } from 'node:test';
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
