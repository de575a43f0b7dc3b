// ES module entry of the Rohrpost client: `import {Rohrpost} from '/js/rohrpost.mjs'`.
// The library itself is the plain script beside it; importing it defines globalThis.Rohrpost.
import './rohrpost.js';

export const Rohrpost = globalThis.Rohrpost;
export const patternMatches = globalThis.Rohrpost.patternMatches;
export default Rohrpost;
