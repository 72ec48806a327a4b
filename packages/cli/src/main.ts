#!/usr/bin/env node
// The `airlock` command-line entry point.
console.log('airlock');
