// The types a handler sees (the WIT contract cmq:push@0.2.0, world
// push-handler-with-config, as componentize-js maps it), for an editor's completion
// and type checks.
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

// The handler's settings, through wasi:config/store (`cmq-host --config-var NAME=VALUE`,
// a route's `[routes.NAME.config]`, `wasmtime serve -S config-var=NAME=VALUE`). A
// store that fails throws.
declare module 'wasi:config/store@0.2.0-rc.1' {
  /** The setting `key`, or undefined when none is given. */
  export function get(key: string): string | undefined;
  /** Every setting, as [name, value] pairs. */
  export function getAll(): Array<[string, string]>;
}
