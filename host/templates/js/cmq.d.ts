// The types a handler sees (the WIT contract cmq:push@0.2.0, world
// push-handler-with-config, as componentize-js maps it), for an editor's completion
// and type checks. The settings store's types are in wasi-config.d.ts.
/// <reference path="./wasi-config.d.ts" />
export type Format = 'json' | 'simplified';

export interface Message {
  messageId: string;
  requestId?: string;
  tags: string[];
  topicOwner?: string;
  topicName?: string;
  subscriptionName?: string;
  publishTime?: bigint;
  body: Uint8Array;
  format: Format;
  attempt?: number;
}

export type Decision =
  | { tag: 'ack' }
  | { tag: 'retry'; val: string }
  | { tag: 'drop'; val: string };

export interface Handler {
  handle(msg: Message): Decision;
}

