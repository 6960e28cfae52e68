// Stands in, under `npm test`, for what the host gives the component: the import
// `wasi:config/store@0.2.0-rc.1` resolves to a module that reads `globalThis.settings`.
// Loaded before the tests by package.json's `node --import`.
import { register } from 'node:module';

const store = `
export const get = (key) => (globalThis.settings ?? {})[key];
export const getAll = () => Object.entries(globalThis.settings ?? {});
`;
const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasi:config/store@')) {
    return { shortCircuit: true, url: 'data:text/javascript,' + encodeURIComponent(${JSON.stringify(store)}) };
  }
  return next(specifier, context);
}
`;
register('data:text/javascript,' + encodeURIComponent(hooks));
