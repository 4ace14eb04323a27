#!/usr/bin/env node
// The `pgha` CLI entry: runs clients/pgha.ts through tsx so `npx pgha ...` works after `npm ci`.
require('tsx/cjs');
require('../clients/pgha.ts');
