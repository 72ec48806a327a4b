#!/usr/bin/env node
// The `airlock` executable. It is committed (dist/ is not) so that npm links it on a fresh clone's first `npm install`; it runs the build that `prepare` makes.
import '../dist/main.js';
