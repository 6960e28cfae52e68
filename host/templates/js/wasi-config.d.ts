// The types of the handler's settings store, wasi:config/store as componentize-js maps
// it: an ambient module, so a file of its own (cmq.d.ts, a module, references it).
// The handler's settings, through wasi:config/store (`cmq-host --config-var NAME=VALUE`,
// a route's `[routes.NAME.config]`, `wasmtime serve -S config-var=NAME=VALUE`). A
// store that fails throws.
declare module 'wasi:config/store@0.2.0-rc.1' {
  /** The setting `key`, or undefined when none is given. */
  export function get(key: string): string | undefined;
  /** Every setting, as [name, value] pairs. */
  export function getAll(): Array<[string, string]>;
}
