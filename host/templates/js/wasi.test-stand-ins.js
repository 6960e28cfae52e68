// Stands in, under `npm test`, for what the host gives the component: the import
// `wasi:config/store@0.2.0-rc.1` resolves to a module that reads `globalThis.settings`.
// Loaded before the tests by package.json's `node --import` (Node.js 18.19 or newer).
import * as module from 'node:module';

const store = `
export const get = (key) => (globalThis.settings ?? {})[key];
export const getAll = () => Object.entries(globalThis.settings ?? {});
`;
const storeUrl = 'data:text/javascript,' + encodeURIComponent(store);
function resolve(specifier, context, next) {
  if (specifier.startsWith('wasi:config/store@')) return { shortCircuit: true, url: storeUrl };
  return next(specifier, context);
}

if (module.registerHooks) {
  // Node.js 22.15 and later: hooks on this thread.
  module.registerHooks({ resolve });
} else {
  const hooks = `const storeUrl = ${JSON.stringify(storeUrl)};\nexport ${resolve}`;
  module.register('data:text/javascript,' + encodeURIComponent(hooks));
}
