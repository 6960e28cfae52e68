// The types a handler sees (the WIT contract cmq:push@0.2.0 as componentize-js maps
// it), for an editor's completion and type checks.
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
